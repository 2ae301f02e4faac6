// The rules editor: a flag state's rule list (docs/rules.md) as rows. It edits the JSON objects it
// is given in place, one key at a time, so keys it has no control for (description, variants on a
// rule, salt) are kept and an untouched rule list comes back exactly as it went in. The operators
// offered come from the engine's own tables (options.operators, served by flags/editor.py); the
// engine's validator, not this file, decides what is valid.

import {el, labelled, ownerOf, place, uid} from "./dom.js";

const TYPE_NAMES = {
  custom: "Attribute", geo: "Country", device: "Device", user: "User ids", percentage: "Percentage rollout",
  segment: "Segment", flag: "Prerequisite flag", all: "All of (group)", any: "Any of (group)", not: "Not",
};
const OPERATOR_NAMES = {
  in: "is one of", not_in: "is not one of", is: "is", is_not: "is not", equals: "equals", not_equals: "does not equal",
  contains: "contains", starts_with: "starts with", ends_with: "ends with", matches: "matches regex",
  gt: "greater than", gte: "at least", lt: "less than", lte: "at most", before: "before (date)",
  after: "after (date)", semver_eq: "version is", semver_gt: "version above", semver_lt: "version below",
  in_cidr: "in network (CIDR)", exists: "is set", not_exists: "is not set", less_than: "first % of users",
  enabled: "is on", disabled: "is off", variant_in: "serves variant",
};
const GROUPS = ["all", "any", "not"];
const STICKINESS = ["userId", "sessionId", "default", "random"];

let countryList = null;
function countries() {  // [code, name] for every region the browser can name (no data file)
  if (countryList) return countryList;
  const names = new Intl.DisplayNames(["en"], {type: "region"});
  const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  countryList = [];
  for (const a of letters) for (const b of letters) {
    const code = a + b;
    let name = code;
    try { name = names.of(code); } catch (e) { continue; }
    if (name && name !== code && !/unknown/i.test(name)) countryList.push([code, name]);
  }
  countryList.sort((x, y) => x[1].localeCompare(y[1]));
  return countryList;
}

// Which input a rule's value needs.
function valueKind(rule, options) {
  const type = rule.type, operator = String(rule.operator);
  if (GROUPS.includes(type) || options.valueless.includes(operator)) return "none";
  if (type === "geo") return "countries";
  if (type === "device") return operator === "is" || operator === "is_not" ? "device" : "devices";
  if (type === "segment") return "segments";
  if (type === "percentage") return "percent";
  if (type === "user" || type === "flag") return "list";
  if (["in", "not_in", "in_cidr"].includes(operator)) return "list";
  if (["gt", "gte", "lt", "lte"].includes(operator)) return "number";
  if (operator === "before" || operator === "after") return "date";
  if (operator.startsWith("semver")) return "semver";
  if (operator === "matches") return "regex";
  if (["contains", "starts_with", "ends_with"].includes(operator)) return Array.isArray(rule.value) ? "list" : "text";
  return "scalar";
}

const BLANK_VALUE = {countries: [], devices: [], segments: [], list: [], percent: 50, device: "mobile", text: "",
                     scalar: "", regex: "", semver: "", date: "", number: undefined, none: undefined};

export function blankRule(type, options) {
  switch (type) {
    case "all": case "any": return {type, rules: []};
    case "not": return {type, rule: blankRule("custom", options)};
    case "custom": return {type, field: "", operator: "equals", value: ""};
    case "flag": return {type, field: options.flags[0] || "", operator: "enabled"};
    default: {
      const rule = {type, operator: options.operators[type][0]};
      const value = BLANK_VALUE[valueKind(rule, options)];
      if (value !== undefined) rule.value = Array.isArray(value) ? [] : value;
      return rule;
    }
  }
}

// The same rule as another type, keeping what carries over (a group's children, the description).
function retyped(rule, type, options) {
  if (["all", "any"].includes(rule.type) && ["all", "any"].includes(type)) return {...rule, type};
  let next = blankRule(type, options);
  if (type === "not" && ["all", "any"].includes(rule.type) && rule.rules.length) next.rule = rule.rules[0];
  if (["all", "any"].includes(type) && rule.type === "not" && rule.rule) next.rules = [rule.rule];
  if (rule.description !== undefined) next = {type, description: rule.description, ...next};
  return next;
}

const splitList = (text) => text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
const asNumber = (text) => (text.trim() !== "" && Number.isFinite(Number(text)) ? Number(text) : text);

export function createRulesEditor(options, initialRules, onChange) {
  let rules = initialRules;
  let rows = new Map();  // path -> {element, errors, controls: {operator, value, field, ...}}
  const root = el("div", {className: "rules-editor"});

  function changed() { onChange(rules); }

  function render() {
    const focused = document.activeElement && root.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
    rows = new Map();
    root.replaceChildren(list(rules, "rules", "Rule ", true));
    if (focused) {
      const again = root.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  // A list of rules (the top level or a group's) with its add buttons.
  function list(items, path, label, top) {
    const ol = el("ol", {className: "rule-list" + (top ? " top" : "")});
    items.forEach((rule, index) => {
      ol.append(row(rule, `${path}[${index}]`, `${label}${top ? "" : "."}${index + 1}`, {
        replace: (next) => { items[index] = next; },
        remove: () => { items.splice(index, 1); },
        move: (delta) => {
          const to = index + delta;
          if (to < 0 || to >= items.length) return false;
          [items[index], items[to]] = [items[to], items[index]];
          return true;
        },
        first: index === 0, last: index === items.length - 1,
      }));
    });
    const where = top ? "" : ` to ${label.trim()}`;
    const add = (type) => () => { items.push(blankRule(type, options)); render(); changed();
      const fresh = root.querySelector(`[data-path="${path}[${items.length - 1}]"] select`);
      if (fresh) fresh.focus(); };
    const errors = top ? el("ul", {className: "errors", id: uid("errors"), "aria-live": "polite"}) : null;
    if (top) rows.set("rules", {element: ol, errors, controls: {}});
    return el("div", {className: "rule-group-body"}, errors, ol, el("div", {className: "adders"},
      el("button", {type: "button", className: "small", text: `Add rule${where}`, onclick: add("custom"),
                    "data-focus-key": `${path}:add-rule`}),
      el("button", {type: "button", className: "small", text: `Add group${where}`, onclick: add("all"),
                    "data-focus-key": `${path}:add-group`})));
  }

  function row(rule, path, label, place_) {
    if (rule === null || typeof rule !== "object" || Array.isArray(rule)) return unreadable(rule, path, label, place_);
    const controls = {};
    const errors = el("ul", {className: "errors", id: uid("errors"), "aria-live": "polite"});
    const key = (name) => `${path}:${name}`;
    const typeSelect = el("select", {"data-focus-key": key("type"), onchange: () => {
      place_.replace(retyped(rule, typeSelect.value, options)); render(); changed(); }},
      ...options.types.map((type) => el("option", {value: type, text: TYPE_NAMES[type] || type,
                                                    selected: type === rule.type})));
    if (!options.types.includes(rule.type)) typeSelect.append(el("option", {value: rule.type, text: String(rule.type), selected: true}));
    controls.type = typeSelect;
    const head = el("div", {className: "rule-head"}, labelled("Type", typeSelect, label));

    if (rule.type === "custom" || rule.type === "flag" || rule.type === "percentage") head.append(fieldControl(rule, label, controls, key));
    if (!GROUPS.includes(rule.type)) {
      const operators = (options.operators[rule.type] || []).slice();
      if (rule.operator !== undefined && !operators.includes(rule.operator)) operators.push(rule.operator);
      const operator = el("select", {"data-focus-key": key("operator"), onchange: () => {
        const before = valueKind(rule, options);
        rule.operator = operator.value;
        const after = valueKind(rule, options);
        if (after !== before) {
          if (after === "none") delete rule.value;
          else if (BLANK_VALUE[after] === undefined) delete rule.value;
          else rule.value = Array.isArray(BLANK_VALUE[after]) ? [] : BLANK_VALUE[after];
        }
        if (rule.caseInsensitive !== undefined && !options.caseInsensitive.includes(rule.operator)) delete rule.caseInsensitive;
        render(); changed(); }},
        ...operators.map((op) => el("option", {value: op, text: OPERATOR_NAMES[op] || op, selected: op === rule.operator})));
      controls.operator = operator;
      head.append(labelled("Operator", operator, label));
      const value = valueControl(rule, label, controls, key);
      if (value) head.append(value);
    }
    const moves = el("span", {className: "row-buttons"},
      el("button", {type: "button", className: "small", text: "↑", "aria-label": `Move ${label.toLowerCase()} up`,
                    disabled: place_.first, "data-focus-key": key("up"),
                    onclick: () => { if (place_.move(-1)) { render(); changed(); } }}),
      el("button", {type: "button", className: "small", text: "↓", "aria-label": `Move ${label.toLowerCase()} down`,
                    disabled: place_.last, "data-focus-key": key("down"),
                    onclick: () => { if (place_.move(1)) { render(); changed(); } }}),
      el("button", {type: "button", className: "small danger", text: "✕", "aria-label": `Remove ${label.toLowerCase()}`,
                    onclick: () => { place_.remove(); render(); changed(); focusAdd(path); }}));
    head.append(moves);

    const item = el("li", {className: "rule" + (GROUPS.includes(rule.type) ? " group" : ""), "data-path": path},
                    head, errors);
    if (rule.type === "all" || rule.type === "any") {
      if (!Array.isArray(rule.rules)) rule.rules = [];
      item.append(list(rule.rules, `${path}.rules`, label, false));
    } else if (rule.type === "not") {
      const inner = el("ol", {className: "rule-list"});
      if (rule.rule && typeof rule.rule === "object") {
        inner.append(row(rule.rule, `${path}.rule`, `${label}.1`, {
          replace: (next) => { rule.rule = next; }, remove: () => { rule.rule = blankRule("custom", options); },
          move: () => false, first: true, last: true}));
      }
      item.append(inner);
    }
    rows.set(path, {element: item, errors, controls});
    return item;
  }

  function unreadable(rule, path, label, place_) {
    const errors = el("ul", {className: "errors", id: uid("errors"), "aria-live": "polite"});
    const item = el("li", {className: "rule", "data-path": path}, el("div", {className: "rule-head"},
      el("code", {text: `${label}: ${JSON.stringify(rule)} (not a rule object; fix it in raw JSON)`}),
      el("span", {className: "row-buttons"}, el("button", {type: "button", className: "small danger", text: "✕",
        "aria-label": `Remove ${label.toLowerCase()}`, onclick: () => { place_.remove(); render(); changed(); }}))), errors);
    rows.set(path, {element: item, errors, controls: {}});
    return item;
  }

  // The attribute a custom rule reads, a prerequisite's flag, a rollout's stickiness.
  function fieldControl(rule, label, controls, key) {
    if (rule.type === "flag") {
      const flags = options.flags.includes(rule.field) || !rule.field ? options.flags : [rule.field, ...options.flags];
      const select = el("select", {"data-focus-key": key("field"), onchange: () => { rule.field = select.value; changed(); }},
        ...flags.map((flag) => el("option", {value: flag, text: flag, selected: flag === rule.field})));
      controls.field = select;
      return labelled("Flag", select, label);
    }
    const listId = uid("attributes");
    const recent = new Set(options.recentAttributes || []);  // offered first (options.attributes' order)
    const names = rule.type === "percentage" ? [...STICKINESS, ...options.attributes] : options.attributes;
    const input = el("input", {type: "text", value: rule.field ?? "", list: listId, autocomplete: "off",
                               placeholder: rule.type === "percentage" ? "userId" : "plan", "data-focus-key": key("field"),
                               oninput: () => {
                                 if (rule.type === "percentage" && input.value === "") delete rule.field;
                                 else rule.field = input.value;
                                 changed(); }});
    input.setAttribute("list", listId);
    controls.field = input;
    return el("span", {className: "field-wrap"},
      labelled(rule.type === "percentage" ? "Bucket by" : "Attribute", input, label),
      el("datalist", {id: listId}, ...[...new Set(names)].map((name) => el("option", {value: name,
        label: recent.has(name) ? `${name} (seen in recent evaluations)` : undefined}))));
  }

  function valueControl(rule, label, controls, key) {
    const kind = valueKind(rule, options);
    const set = (value) => { rule.value = value; changed(); };
    const focus = key("value");
    switch (kind) {
      case "none": return null;
      case "countries": return countryPicker(rule, label, controls, focus);
      case "segments": {
        const keys = Object.keys(options.segments);
        const chosen = Array.isArray(rule.value) ? rule.value : [];
        for (const k of chosen) if (!keys.includes(k)) keys.push(k);
        const hint = el("small", {className: "hint"});
        const describe = () => { hint.textContent = chosen.filter((k) => options.segments[k])
          .map((k) => `${k}: ${options.segments[k]}`).join("; "); };
        const select = el("select", {multiple: true, size: Math.min(Math.max(keys.length, 2), 6), "data-focus-key": focus,
          onchange: () => { set([...select.selectedOptions].map((o) => o.value)); chosen.splice(0, chosen.length, ...rule.value); describe(); }},
          ...keys.map((k) => el("option", {value: k, text: k, title: options.segments[k] || "unknown segment",
                                            selected: chosen.includes(k)})));
        describe();
        controls.value = select;
        return el("span", {className: "field-wrap"}, labelled("Segments", select, label), hint);
      }
      case "device": {
        const select = el("select", {"data-focus-key": focus, onchange: () => set(select.value)},
          ...options.devices.map((d) => el("option", {value: d, text: d, selected: d === rule.value})));
        if (!options.devices.includes(rule.value)) select.prepend(el("option", {value: String(rule.value ?? ""), text: String(rule.value ?? "—"), selected: true}));
        controls.value = select;
        return labelled("Device", select, label);
      }
      case "devices": {
        const chosen = new Set(Array.isArray(rule.value) ? rule.value : []);
        const boxes = options.devices.map((d) => {
          const box = el("input", {type: "checkbox", value: d, checked: chosen.has(d), onchange: () => {
            set(options.devices.filter((x) => boxes.find((b) => b.value === x).checked)); }});
          return box;
        });
        controls.value = boxes[0];
        return el("fieldset", {className: "checks"}, el("legend", {}, el("span", {className: "sr-only", text: label + " "}), "Devices"),
          ...boxes.map((box) => el("label", {}, box, " " + box.value)));
      }
      case "list": {
        const numbers = Array.isArray(rule.value) && rule.value.length > 0 && rule.value.every((v) => typeof v === "number");
        const area = el("textarea", {rows: 3, value: Array.isArray(rule.value) ? rule.value.join("\n") : String(rule.value ?? ""),
          placeholder: "one per line, or comma-separated", "data-focus-key": focus,
          oninput: () => set(splitList(area.value).map((v) => (numbers ? asNumber(v) : v)))});
        controls.value = area;
        const name = rule.type === "user" ? "User ids" : rule.type === "flag" ? "Variants" : "Values";
        return labelled(name, area, label);
      }
      case "percent": {
        const current = typeof rule.value === "number" ? rule.value : 0;
        const number = el("input", {type: "number", min: 0, max: 100, step: "any", value: String(rule.value ?? ""),
          className: "narrow", "data-focus-key": focus, oninput: () => { slider.value = number.value; set(asNumber(number.value)); }});
        const slider = el("input", {type: "range", min: 0, max: 100, step: 1, value: String(current), "aria-hidden": "true",
          tabIndex: -1, oninput: () => { number.value = slider.value; set(Number(slider.value)); }});
        controls.value = number;
        return el("span", {className: "field-wrap percent"}, labelled("Percent of users", number, label), slider);
      }
      case "number": {
        const input = el("input", {type: "number", step: "any", value: rule.value === undefined ? "" : String(rule.value),
          className: "narrow", "data-focus-key": focus, oninput: () => set(asNumber(input.value))});
        controls.value = input;
        return labelled("Number", input, label);
      }
      case "date": {
        const dateOnly = rule.value === undefined || rule.value === "" || /^\d{4}-\d{2}-\d{2}$/.test(String(rule.value));
        const input = el("input", {type: dateOnly ? "date" : "text", value: String(rule.value ?? ""), "data-focus-key": focus,
          placeholder: "2026-01-31T09:00:00Z", oninput: () => set(input.value)});
        controls.value = input;
        return labelled(dateOnly ? "Date" : "Date/time (ISO)", input, label);
      }
      case "scalar": {
        const typeOf = (v) => (typeof v === "number" ? "number" : typeof v === "boolean" ? "boolean" : "text");
        const as = el("select", {"aria-label": `${label} value type`, onchange: () => write()},
          ...["text", "number", "boolean"].map((t) => el("option", {value: t, text: t, selected: typeOf(rule.value) === t})));
        const input = el("input", {type: "text", value: String(rule.value ?? ""), "data-focus-key": focus, oninput: () => write()});
        const write = () => set(as.value === "number" ? asNumber(input.value)
          : as.value === "boolean" ? (input.value.trim() === "true" ? true : input.value.trim() === "false" ? false : input.value)
          : input.value);
        controls.value = input;
        return el("span", {className: "field-wrap"}, labelled("Value", input, label), as, caseBox(rule, label, controls));
      }
      default: {  // text, semver, regex
        const input = el("input", {type: "text", value: String(rule.value ?? ""), "data-focus-key": focus,
          className: kind === "regex" ? "mono" : "", placeholder: kind === "semver" ? "1.2.3" : kind === "regex" ? "^beta-\\d+$" : "",
          oninput: () => set(input.value)});
        controls.value = input;
        const names = {regex: "Pattern", semver: "Version", text: "Text"};
        // the engine's safety check answers through the row's errors; silence there is its yes
        const verdict = kind === "regex" ? el("small", {className: "hint verdict", "aria-live": "polite"}) : null;
        if (verdict) controls.verdict = verdict;
        return el("span", {className: "field-wrap"}, labelled(names[kind] || "Value", input, label), caseBox(rule, label, controls), verdict);
      }
    }
  }

  function caseBox(rule, label, controls) {
    if (rule.type !== "custom" || !options.caseInsensitive.includes(rule.operator)) return null;
    const box = el("input", {type: "checkbox", checked: rule.caseInsensitive === true, onchange: () => {
      if (box.checked) rule.caseInsensitive = true; else delete rule.caseInsensitive;
      changed(); }});
    controls.caseInsensitive = box;
    return el("label", {className: "check"}, box, el("span", {className: "sr-only", text: label + " "}), " ignore case");
  }

  // A searchable multi-select of countries by name; the value stays the list of ISO codes.
  function countryPicker(rule, label, controls, focus) {
    const chosen = Array.isArray(rule.value) ? rule.value.slice() : [];
    const all = countries();
    const known = new Set(all.map(([code]) => code));
    const extra = chosen.filter((c) => !known.has(String(c).toUpperCase())).map((c) => [c, String(c)]);
    const select = el("select", {multiple: true, size: 6, "data-focus-key": focus, onchange: () => {
      const picked = new Set([...select.selectedOptions].map((o) => o.value));
      // keep the order already written, then the new picks in list order
      const next = chosen.filter((c) => picked.has(c));
      for (const o of select.selectedOptions) if (!next.includes(o.value)) next.push(o.value);
      chosen.splice(0, chosen.length, ...next);
      summary.textContent = chosen.join(", ") || "none";
      rule.value = chosen.slice(); onChange(rules); }},
      ...[...extra, ...all].map(([code, name]) => el("option", {value: code, text: `${name} (${code})`,
                                                                 selected: chosen.includes(code)})));
    const search = el("input", {type: "search", placeholder: "Search countries", oninput: () => {
      const q = search.value.trim().toLowerCase();
      for (const option of select.options) option.hidden = q !== "" && !option.selected && !option.text.toLowerCase().includes(q);
    }});
    const summary = el("output", {className: "hint", text: chosen.join(", ") || "none"});
    controls.value = select;
    return el("span", {className: "field-wrap countries"}, labelled("Search countries", search, label),
              labelled("Countries", select, label), summary);
  }

  function focusAdd(path) {  // "rules[1].rules[0]" -> the "Add rule" button of "rules[1].rules"
    const list = path.replace(/\[\d+\]$/, "");
    const button = root.querySelector(`[data-focus-key="${CSS.escape(list + ":add-rule")}"]`);
    if (button) button.focus();
  }

  render();
  return {
    element: root,
    get rules() { return rules; },
    setRules(next) { rules = next; render(); },
    // {path: [messages]} from the validator, each shown at its row, the field marked invalid.
    showErrors(fields) {
      for (const [path, {errors, controls}] of rows) {
        errors.replaceChildren();
        for (const control of Object.values(controls)) control.removeAttribute("aria-invalid");
        if (controls.verdict) {
          const refused = Object.keys(fields || {}).some((p) => p === `${path}.value`);
          controls.verdict.textContent = refused || !controls.value.value ? "" : "✓ the engine accepts this pattern (runs in linear time)";
        }
      }
      for (const [path, messages] of Object.entries(fields || {})) {
        const owner = ownerOf(path, rows.keys()) || "rules";
        const {errors, controls} = rows.get(owner);
        const suffix = path.slice(owner.length);
        const control = controls[(suffix.match(/^\.([A-Za-z]+)/) || [])[1]];
        if (control) { control.setAttribute("aria-invalid", "true"); control.setAttribute("aria-describedby", errors.id); }
        for (const message of messages) {
          errors.append(el("li", {}, suffix ? el("strong", {text: place(suffix) + ": "}) : null, message));
        }
      }
    },
    // Marks the rule an explanation says decided (null clears), and each rule it tried as matched
    // or not (`tried`: the explanation's rules, nested).
    highlight(path, tried = []) {
      const verdicts = new Map();
      const walk = (list) => { for (const rule of list || []) { verdicts.set(rule.path, rule.matched); walk(rule.rules); } };
      walk(tried);
      for (const [rowPath, {element}] of rows) {
        element.classList.toggle("decided", rowPath === path && path !== "rules");
        if (verdicts.has(rowPath)) element.dataset.matched = String(verdicts.get(rowPath));
        else delete element.dataset.matched;
      }
    },
  };
}
