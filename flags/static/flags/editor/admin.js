// The admin's flag form: a targeting editor over each environment's rules textarea. The textarea
// stays the form field (the editor writes it; "Raw JSON" shows it), so the form posts the same JSON.

import {createTargetingPanel} from "./panel.js";

for (const textarea of document.querySelectorAll("textarea[data-rules-editor]")) {
  const options = JSON.parse(textarea.dataset.rulesEditor);
  const label = (textarea.getAttribute("aria-label") || "").replace(/^Rules JSON for /, "");
  const panel = createTargetingPanel({options, textarea, label});
  textarea.before(panel.element);
}
