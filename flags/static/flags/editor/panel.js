// One environment's targeting: the rule sentence, the rules editor, and the raw-JSON toggle. The
// textarea is the source of truth for what is posted (the admin's form field, or the page's own):
// every edit writes it, and the raw view is that textarea itself. Each change is checked by the
// engine's validator on the server (options.urls.check) and its errors shown at their rows.

import {debounce, el, postJSON, pretty} from "./dom.js";
import {createRulesEditor} from "./rules.js";

export function createTargetingPanel({options, textarea, label, onChange = () => {}}) {
  const summary = el("p", {className: "sentence rule-summary", "aria-live": "polite"});
  const rawError = el("p", {className: "errors raw-error", role: "alert"});
  let raw = false;
  let rules = [];
  try {
    rules = textarea.value.trim() ? JSON.parse(textarea.value) : [];
  } catch (e) {
    raw = true;  // unreadable JSON (the admin showing back what was typed): edit it as text
  }
  if (!Array.isArray(rules)) { raw = true; rules = []; }

  const editor = createRulesEditor(options, rules, (next) => {
    editor.highlight(null);  // an explanation of the saved rules says nothing of the edited ones
    textarea.value = pretty(next);
    check();
    onChange();
  });
  const toggle = el("button", {type: "button", className: "small raw-toggle", "aria-pressed": String(raw),
                               text: "Raw JSON", "aria-label": `Raw JSON${label ? " for " + label : ""}`, onclick: () => setRaw(!raw)});

  function setRaw(on) {
    if (on) {
      textarea.value = pretty(editor.rules);
    } else {
      let parsed;
      try { parsed = JSON.parse(textarea.value || "[]"); } catch (e) {
        rawError.textContent = `Not valid JSON: ${e.message}. Fix it to go back to the editor.`;
        return;
      }
      if (!Array.isArray(parsed)) { rawError.textContent = "The rules must be a JSON list: [ ... ]."; return; }
      editor.setRules(parsed);
    }
    rawError.textContent = "";
    raw = on;
    toggle.setAttribute("aria-pressed", String(raw));
    textarea.hidden = !raw;
    editor.element.hidden = raw;
    check();
  }

  textarea.addEventListener("input", () => { if (raw) { check(); onChange(); } });

  let checks = 0;
  const check = debounce(async () => {
    let current;
    try { current = raw ? JSON.parse(textarea.value || "[]") : editor.rules; } catch (e) {
      rawError.textContent = `Not valid JSON: ${e.message}`;
      return;
    }
    rawError.textContent = "";
    const asked = ++checks;
    const {status, body} = await postJSON(options.urls.check, {rules: current});
    if (asked !== checks) return;  // a newer check is on its way: its answer counts
    if (status === 200 && body) {
      summary.textContent = body.summary;
      editor.showErrors(body.fields);
      panel.valid = Object.keys(body.fields).length === 0;
      if (raw) rawError.textContent = Object.entries(body.fields).map(([p, m]) => `${p}: ${m.join(" ")}`).join("\n");
    } else if (body && body.error) {
      editor.showErrors(body.error.fields);
    }
    onChange();
  }, 250);

  textarea.hidden = !raw;
  editor.element.hidden = raw;
  const element = el("div", {className: "targeting-panel"},
    el("div", {className: "panel-bar"}, summary, toggle), rawError, editor.element);
  const panel = {
    element, editor, valid: true,
    // The rules as they would be saved (raw: the textarea's JSON, else the editor's), or undefined.
    current() {
      try { return raw ? JSON.parse(textarea.value || "[]") : editor.rules; } catch (e) { return undefined; }
    },
    check,
    setRaw,
  };
  check();
  return panel;
}
