// Small DOM and HTTP helpers the editor's modules share.

let counter = 0;
export const uid = (prefix) => `${prefix}-${++counter}`;

// el("select", {className: "op", onchange: f, "aria-label": "x"}, child, ...): properties where the
// element has them (value, checked, hidden...), attributes otherwise; "on*" are listeners.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else if (key in node && !key.includes("-") && key !== "list") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}

// A visible label around its control, with an optional hidden prefix so every control of a nested
// rule has a unique accessible name ("Rule 1.2 Operator").
export function labelled(text, control, hiddenPrefix = "") {
  if (!control.id) control.id = uid("control");
  // the label beside the control, not around it: a wrapped control's value joins its name
  return el("span", {className: "field"}, el("label", {htmlFor: control.id, className: "field-name"},
    hiddenPrefix ? el("span", {className: "sr-only", text: hiddenPrefix + " "}) : null, text), control);
}

export function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

// POST JSON; resolves to {status, body} (body null when the answer is not JSON).
export async function postJSON(url, data) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRFToken": csrfToken(), "Accept": "application/json"},
    body: JSON.stringify(data),
  });
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  return {status: response.status, body};
}

// GET JSON; resolves to {status, body} (body null when the answer is not JSON).
export async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  return {status: response.status, body};
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

export const pretty = (value) => JSON.stringify(value, null, 2);

// "rules[1].value[0]" below the row "rules[1]" -> "Value, item 1": an error path as a place.
export function place(suffix) {
  if (!suffix) return "";
  const names = {operator: "Operator", value: "Value", field: "Attribute", type: "Type", rules: "Rules", rule: "Rule",
                 key: "Key", weight: "Weight", caseInsensitive: "Case-insensitive", salt: "Salt",
                 variants: "Variants", stickiness: "Stickiness"};
  return suffix.replace(/^\./, "").split(".").map((part) => {
    const match = part.match(/^([A-Za-z_]+)((?:\[\d+\])*)$/);
    if (!match) return part;
    const items = [...match[2].matchAll(/\[(\d+)\]/g)].map((m) => `item ${Number(m[1]) + 1}`);
    return [names[match[1]] || match[1], ...items].join(", ");
  }).join(" › ");
}

// The row whose path is the longest prefix of an error path ("rules[1]" for "rules[1].value[0]").
export function ownerOf(path, paths) {
  let best = null;
  for (const candidate of paths) {
    if (path === candidate || path.startsWith(candidate + ".") || path.startsWith(candidate + "[")) {
      if (best === null || candidate.length > best.length) best = candidate;
    }
  }
  return best;
}
