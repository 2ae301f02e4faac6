// A line diff (longest common subsequence) of two JSON texts: what saving would change.

import {el} from "./dom.js";

export function lineDiff(before, after) {
  const a = before.split("\n"), b = after.split("\n");
  const n = a.length, m = b.length;
  const lcs = Array.from({length: n + 1}, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  }
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
    else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) { out.push(["+", b[j]]); j++; }
    else { out.push(["-", a[i]]); i++; }
  }
  return out;
}

// <pre> of the changed lines with three lines of context; empty when nothing changed.
export function renderDiff(before, after) {
  const lines = lineDiff(before, after);
  if (!lines.some(([sign]) => sign !== " ")) return null;
  const near = lines.map((_, k) => lines.slice(Math.max(0, k - 3), k + 4).some(([sign]) => sign !== " "));
  const pre = el("pre", {className: "json-diff"});
  let skipped = false;
  lines.forEach(([sign, text], k) => {
    if (!near[k]) { if (!skipped) pre.append(el("span", {className: "skip", text: "  …\n"})); skipped = true; return; }
    skipped = false;
    pre.append(el("span", {className: sign === "+" ? "add" : sign === "-" ? "del" : "", text: `${sign} ${text}\n`}));
  });
  return pre;
}
