// "Evaluate as": one user's answer in every environment side by side, and why (the explain API,
// options.urls["evaluate-as"]), with a picker of the flag's recent real contexts
// (urls["recent-contexts"], sampled from evaluations: analytics/recent.py) that fills the form.
// Used by the flag page (page.js) and the admin's flag change page (admin.js) on the same markup:
// form#evaluate-as-form (userId, context), #evaluate-context-error, #evaluate-as-result.

import {el, getJSON, labelled, postJSON, pretty} from "./dom.js";

const show = (value) => (value === null || value === undefined ? "—" : typeof value === "string" ? value : JSON.stringify(value));

function ago(at) {
  const seconds = Math.max(0, Math.round(Date.now() / 1000 - at));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

// "user-123 · production · ON · 2 min ago · {"plan":"premium"}", cut to a readable length.
export function describeSample(sample, names = {}) {
  const context = JSON.stringify(sample.context || {});
  const text = [sample.userId ?? "anonymous", names[sample.environment] || sample.environment,
                sample.enabled ? "ON" : "OFF", ago(sample.at), context.length > 80 ? context.slice(0, 79) + "…" : context];
  return text.join(" · ");
}

// The picker: a select of the recent contexts; choosing one fills the user id and context.
function recentPicker(form, url, names) {
  let samples = [];
  const select = el("select", {className: "recent-contexts", name: "recent", onchange: () => fill()});
  const status = el("span", {className: "hint recent-status", role: "status"});
  const refresh = el("button", {type: "button", className: "small", text: "↻", title: "Reload the recent contexts",
                                "aria-label": "Reload recent contexts", onclick: () => load()});

  function fill() {
    const sample = samples[Number(select.value)];
    if (!sample) return;
    form.elements.userId.value = sample.userId ?? "";
    form.elements.context.value = pretty(sample.context || {});
    form.elements.context.removeAttribute("aria-invalid");
    status.textContent = sample.truncated ? "Some of this context was cut to the sampling's size limits." : "";
  }

  async function load() {
    let answer;
    try { answer = await getJSON(url); } catch (e) { answer = {status: 0, body: null}; }
    const {status: code, body} = answer;
    samples = code === 200 && body ? body.contexts : [];
    const empty = code !== 200 || !body ? `Recent contexts unavailable (HTTP ${code}).`
      : !body.enabled ? "Recent contexts are turned off (FLAGS_RECENT_CONTEXTS)."
      : samples.length ? `Pick one of the last ${samples.length} evaluations…` : "No evaluation of this flag sampled yet.";
    select.replaceChildren(el("option", {value: "", text: empty}),
      ...samples.map((sample, i) => el("option", {value: String(i), text: describeSample(sample, names)})));
    select.disabled = samples.length === 0;
    status.textContent = "";
  }

  load();
  return el("span", {className: "recent-picker"}, labelled("Recent contexts", select), refresh, status);
}

// Wires the form; onExplained(body) gets each answer (the page outlines the deciding rules).
export function mountEvaluateAs({urls, environments = [], onExplained = () => {}}) {
  const form = document.getElementById("evaluate-as-form");
  if (!form) return null;
  const result = document.getElementById("evaluate-as-result");
  const contextError = document.getElementById("evaluate-context-error");
  const names = Object.fromEntries(environments.map((e) => [e.key, e.name]));
  if (urls["recent-contexts"]) form.prepend(recentPicker(form, urls["recent-contexts"], names));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const userId = form.elements.userId.value;
    let context = {};
    const text = form.elements.context.value.trim();
    if (text) {
      try { context = JSON.parse(text); } catch (e) {
        contextError.textContent = `Not valid JSON: ${e.message}`;
        form.elements.context.setAttribute("aria-invalid", "true");
        return;
      }
    }
    contextError.textContent = "";
    form.elements.context.removeAttribute("aria-invalid");
    const {status, body} = await postJSON(urls["evaluate-as"], {userId: userId || null, context});
    if (status !== 200 || !body) {
      const fields = body && body.error ? body.error.fields : {};
      contextError.textContent = body && body.error ? body.error.message : `HTTP ${status}`;
      if (fields.context) form.elements.context.setAttribute("aria-invalid", "true");
      return;
    }
    result.replaceChildren(explanationTable(body, names));
    onExplained(body);
  });
  return form;
}

function explanationTable(body, names) {
  const envs = Object.entries(body.environments);
  const line = (title, get) => el("tr", {}, el("th", {scope: "row", text: title}),
    ...envs.map(([env, answer]) => el("td", {"data-env": env}, get(answer))));
  const tried = (rules) => el("ul", {className: "tried"}, ...(rules || []).map((rule) => el("li", {className: rule.matched ? "matched" : "missed"},
    el("code", {text: rule.path}), ` ${rule.matched ? "✓" : "✗"} ${rule.message}`,
    rule.attribute ? el("span", {className: "hint", text: ` (looked at ${rule.attribute}, saw ${show(rule.value)})`}) : null,
    rule.rules && rule.rules.length ? tried(rule.rules) : null)));
  return el("div", {className: "tablewrap"}, el("table", {className: "plain explain"},
    el("caption", {text: `Evaluated as ${body.userId ?? "an anonymous user"}${body.archived ? " (archived flag)" : ""}`}),
    el("thead", {}, el("tr", {}, el("th", {scope: "col", text: ""}),
      ...envs.map(([env]) => el("th", {scope: "col", text: names[env] || env})))),
    el("tbody", {},
      line("Enabled", (a) => el("span", {className: `status ${a.enabled ? "on" : "off"}`, text: a.enabled ? "ON" : "OFF"})),
      line("Variant", (a) => show(a.variant)),
      line("Value", (a) => el("code", {text: show(a.value)})),
      line("Reason", (a) => a.reason),
      line("Deciding rule", (a) => a.decidingRule ? el("code", {text: a.decidingRule}) : "—"),
      line("Why", (a) => a.summary),
      line("Rules tried", (a) => tried(a.rules)))));
}
