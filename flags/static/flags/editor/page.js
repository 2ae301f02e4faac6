// The flag page (/flags/<key>): the targeting editor per environment (rule sentence, editor,
// raw JSON, the pending change as a diff, save), the variants editor of a multivariate flag, and
// "Evaluate as" (evaluate.js): one user's answer and why, in every environment side by side.

import {el, labelled, postJSON, pretty} from "./dom.js";
import {renderDiff} from "./diff.js";
import {mountEvaluateAs} from "./evaluate.js";
import {createTargetingPanel} from "./panel.js";
import {createVariantsEditor} from "./variants.js";

const data = JSON.parse(document.getElementById("editor-data").textContent);
const options = data.options;
const panels = {};

function environmentPanel(state) {
  let savedText = pretty(state.rules);
  const textarea = el("textarea", {className: "mono raw-json", rows: 16, spellcheck: false, value: savedText,
                                   "aria-label": `Rules JSON for ${state.name}`});
  const pending = el("div", {className: "pending", "aria-live": "polite"});
  const status = el("p", {className: "save-status", role: "status"});
  const save = el("button", {type: "button", className: "primary", text: `Save targeting in ${state.name}`, disabled: true,
                             onclick: () => submit()});

  let panel = null;
  function update() {
    const current = panel ? panel.current() : state.rules;
    const diff = current === undefined ? null : renderDiff(savedText, pretty(current));
    pending.replaceChildren(...(diff ? [el("h4", {text: "Pending change (− saved, + yours)"}), diff] : []));
    save.disabled = !diff;
  }

  async function submit() {
    const rules = panel.current();
    if (rules === undefined) { status.textContent = "Not saved: the raw JSON does not parse."; return; }
    save.disabled = true;
    status.textContent = "Saving…";
    const {status: code, body} = await postJSON(options.urls.targeting, {environment: state.environment, version: state.version, rules});
    if (code === 200) {
      state.version = body.version;
      savedText = pretty(body.rules);
      status.textContent = `Saved: ${state.name} is now at version ${body.version}.`;
      const card = document.querySelector(`.card[data-env="${CSS.escape(state.environment)}"] .sentence`);
      if (card && body.summary) card.textContent = body.summary;
    } else if (code === 400 && body) {
      panel.editor.showErrors(body.error.fields);
      status.textContent = `Not saved: ${body.error.message}`;
    } else if (code === 409) {
      status.textContent = "Not saved: someone changed this environment since you loaded the page. Reload to see their change, then redo yours.";
    } else {
      status.textContent = `Not saved (HTTP ${code}).`;
    }
    update();
  }

  panel = createTargetingPanel({options, textarea, label: state.name, onChange: update});
  panels[state.environment] = panel;
  return el("div", {className: "env-targeting", "data-env": state.environment, hidden: true},
    panel.element, textarea, pending, el("div", {className: "save-bar"}, save, status));
}

function targeting() {
  const host = document.getElementById("targeting-editor");
  if (!host || !data.states) return;
  const parts = data.states.map(environmentPanel);
  const choose = el("select", {onchange: () => show(choose.value)},
    ...data.states.map((s) => el("option", {value: s.environment, text: s.name})));
  const show = (env) => { for (const part of parts) part.hidden = part.dataset.env !== env; };
  host.replaceChildren(labelled("Environment to edit", choose), ...parts);
  const preferred = data.states.find((s) => s.environment === "production") || data.states[0];
  if (preferred) { choose.value = preferred.environment; show(preferred.environment); }
}

function variants() {
  const host = document.getElementById("variants-editor");
  if (!host || !data.variants) return;
  let seen = {variants: structuredClone(data.variants), stickiness: data.stickiness};  // what the server had
  if (data.offVariants) seen.offVariants = {...data.offVariants};
  const status = el("p", {className: "save-status", role: "status"});
  const save = el("button", {type: "button", className: "primary", text: "Save variants", onclick: () => submit()});
  let editor = null;
  editor = createVariantsEditor({options, variants: data.variants, stickiness: data.stickiness,
                                 offVariants: data.offVariants || null, environments: data.states || [],
                                 onChange: () => { if (editor) update(); }});
  function update() {
    const problem = editor.problem();
    save.disabled = Boolean(problem);
    save.title = problem;
  }
  async function submit() {
    const problem = editor.problem();
    if (problem) { status.textContent = `Not saved: ${problem}`; return; }
    status.textContent = "Saving…";
    const request = {variants: editor.variants, stickiness: editor.stickiness, seen};
    if (editor.offVariants) request.offVariants = editor.offVariants;
    const {status: code, body} = await postJSON(options.urls.variants, request);
    if (code === 200) seen = {variants: body.variants, stickiness: body.stickiness, offVariants: body.offVariants};
    status.textContent = code === 200 ? "Saved: every environment serves the new split."
      : code === 409 ? "Not saved: someone changed the variants since you loaded the page. Reload to see their change, then redo yours."
      : code === 400 && body ? `Not saved: ${body.error.message}` : `Not saved (HTTP ${code}).`;
  }
  host.replaceChildren(editor.element, el("div", {className: "save-bar"}, save, status));
  update();
}

function evaluateAs() {
  mountEvaluateAs({urls: options.urls, environments: data.environments || [], onExplained: (body) => {
    for (const [env, answer] of Object.entries(body.environments)) {
      if (panels[env]) panels[env].editor.highlight(answer.decidingRule, answer.rules);
    }
  }});
}

targeting();
variants();
evaluateAs();
