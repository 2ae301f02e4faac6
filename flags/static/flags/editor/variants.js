// A multivariate flag's variants as rows (key, weight, JSON value), the live weight total (the
// editor asks for 100), and the flag's stickiness. Edits the variant objects in place, so keys
// without a control (overrides, description) are kept. "Served when off": per environment, the
// variant (with its value) served while the flag is off there (None: no variant, no value).

import {debounce, el, labelled, ownerOf, place, postJSON, uid} from "./dom.js";

export function createVariantsEditor({options, variants, stickiness, offVariants = null, environments = [],
                                      onChange = () => {}}) {
  let rows = new Map();
  const badJSON = new Set();  // variant objects whose value text does not parse
  const total = el("output", {className: "total", "aria-live": "polite"});
  const topErrors = el("ul", {className: "errors"});
  const body = el("ol", {className: "variant-list"});
  const sticky = el("input", {type: "text", value: stickiness || "", placeholder: "userId", autocomplete: "off",
                              oninput: () => { changed(); }});

  // One labelled <select> per environment: None + the variant keys (kept in step with the rows).
  const offSelects = new Map();
  const offFieldset = offVariants ? el("fieldset", {className: "off-variants"},
    el("legend", {text: "Served when off (killed, disabled, or no rule matched)"}),
    ...environments.map(({environment, name}) => {
      const select = el("select", {className: "off-variant", "data-env": environment, onchange: () => onChange()});
      offSelects.set(environment, select);
      refreshOff(select, offVariants[environment] || "");
      return labelled(`Served when off in ${name}`, select);
    })) : null;

  function keys() { return variants.map((v) => v.key).filter((k) => typeof k === "string" && k); }

  function refreshOff(select, chosen = select.value) {
    const present = keys();
    const options = [el("option", {value: "", text: "None (no variant, no value)"}),
                     ...present.map((k) => el("option", {value: k, text: k}))];
    if (chosen && !present.includes(chosen)) options.push(el("option", {value: chosen, text: `${chosen} (removed)`}));
    select.replaceChildren(...options);
    select.value = chosen;
  }

  function sum() { return variants.reduce((acc, v) => acc + (Number.isInteger(v.weight) ? v.weight : 0), 0); }

  function changed() {
    const t = sum();
    total.textContent = `Total weight: ${t}` + (t === 100 ? " ✓" : ` (must be 100: ${t < 100 ? "add" : "remove"} ${Math.abs(100 - t)})`);
    total.classList.toggle("bad", t !== 100);
    for (const select of offSelects.values()) refreshOff(select);
    check();
    onChange();
  }

  function render() {
    rows = new Map();
    body.replaceChildren(...variants.map((variant, index) => row(variant, index)));
    changed();
  }

  function row(variant, index) {
    const label = `Variant ${index + 1}`;
    const errors = el("ul", {className: "errors", id: uid("errors"), "aria-live": "polite"});
    const key = el("input", {type: "text", value: variant.key ?? "", className: "narrow",
                             oninput: () => { variant.key = key.value; changed(); }});
    const weight = el("input", {type: "number", min: 0, step: 1, value: String(variant.weight ?? ""), className: "narrow",
                                oninput: () => { const w = Number(weight.value);
                                  variant.weight = weight.value !== "" && Number.isInteger(w) ? w : weight.value; changed(); }});
    const jsonError = el("span", {className: "errors", role: "alert"});
    const value = el("textarea", {rows: 1, className: "mono",
      value: variant.value === undefined ? "" : JSON.stringify(variant.value), placeholder: '"blue" or {"color": "blue"}',
      oninput: () => {
        if (value.value.trim() === "") { delete variant.value; badJSON.delete(variant); jsonError.textContent = ""; }
        else {
          try { variant.value = JSON.parse(value.value); badJSON.delete(variant); jsonError.textContent = ""; value.removeAttribute("aria-invalid"); }
          catch (e) { badJSON.add(variant); jsonError.textContent = `Not valid JSON: ${e.message}`; value.setAttribute("aria-invalid", "true"); }
        }
        changed(); }});
    const move = (delta) => () => {
      const to = index + delta;
      [variants[index], variants[to]] = [variants[to], variants[index]];
      render();
    };
    const item = el("li", {className: "variant", "data-path": `variants[${index}]`},
      el("div", {className: "rule-head"},
        labelled("Key", key, label), labelled("Weight", weight, label), labelled("Value (JSON)", value, label),
        el("span", {className: "row-buttons"},
          el("button", {type: "button", className: "small", text: "↑", "aria-label": `Move ${label.toLowerCase()} up`,
                        disabled: index === 0, onclick: move(-1)}),
          el("button", {type: "button", className: "small", text: "↓", "aria-label": `Move ${label.toLowerCase()} down`,
                        disabled: index === variants.length - 1, onclick: move(1)}),
          el("button", {type: "button", className: "small danger", text: "✕", "aria-label": `Remove ${label.toLowerCase()}`,
                        onclick: () => { badJSON.delete(variant); variants.splice(index, 1); render(); }}))),
      jsonError, errors);
    rows.set(`variants[${index}]`, {errors, controls: {key, weight, value}});
    return item;
  }

  let checks = 0;
  const check = debounce(async () => {
    const asked = ++checks;
    const {status, body: answer} = await postJSON(options.urls.check, {variants});
    if (asked !== checks) return;  // a newer check is on its way: its answer counts
    const fields = status === 200 && answer ? answer.fields : (answer && answer.error ? answer.error.fields : {});
    topErrors.replaceChildren();
    for (const {errors, controls} of rows.values()) {
      errors.replaceChildren();
      for (const c of Object.values(controls)) if (c !== controls.value || !badJSON.size) c.removeAttribute("aria-invalid");
    }
    for (const [path, messages] of Object.entries(fields)) {
      const owner = ownerOf(path, rows.keys());
      const target = owner ? rows.get(owner) : null;
      const suffix = owner ? path.slice(owner.length) : "";
      const control = target && target.controls[(suffix.match(/^\.([A-Za-z]+)/) || [])[1]];
      if (control) control.setAttribute("aria-invalid", "true");
      for (const message of messages) {
        (target ? target.errors : topErrors).append(el("li", {}, suffix ? el("strong", {text: place(suffix) + ": "}) : null, message));
      }
    }
    editor.valid = Object.keys(fields).length === 0;
    onChange();
  }, 250);

  const element = el("div", {className: "variants-editor"}, topErrors, body,
    el("div", {className: "adders"},
      el("button", {type: "button", className: "small", text: "Add variant", onclick: () => {
        variants.push({key: `variant-${variants.length + 1}`, weight: 0}); render();
        body.lastElementChild.querySelector("input").focus(); }}),
      total),
    labelled("Stickiness (context attribute that keeps a user on their variant)", sticky),
    ...(offFieldset ? [offFieldset] : []));
  const editor = {
    element, valid: true,
    get variants() { return variants; },
    get stickiness() { return sticky.value; },
    // {environment: variant key or ""}, or null when the page gave no off variants
    get offVariants() { return offVariants ? Object.fromEntries([...offSelects].map(([env, s]) => [env, s.value])) : null; },
    // What the editor will not save: a weight total other than 100, or a value that is not JSON.
    problem() {
      if (badJSON.size) return "A variant's value is not valid JSON.";
      if (sum() !== 100) return `Weights total ${sum()}, not 100.`;
      const present = keys();
      for (const [env, select] of offSelects) {
        if (select.value && !present.includes(select.value)) return `${env} serves removed variant ${select.value} when off: choose another.`;
      }
      return "";
    },
  };
  render();
  return editor;
}
