// The admin's flag form: a targeting editor over each environment's rules textarea. The textarea
// stays the form field (the editor writes it; "Raw JSON" shows it), so the form posts the same JSON.
// Below the form, "Evaluate as" (evaluate.js, as on the flag page): the deciding rule of each
// environment's answer is outlined in that environment's editor.

import {mountEvaluateAs} from "./evaluate.js";
import {createTargetingPanel} from "./panel.js";

const panels = {};
for (const textarea of document.querySelectorAll("textarea[data-rules-editor]")) {
  const options = JSON.parse(textarea.dataset.rulesEditor);
  const label = (textarea.getAttribute("aria-label") || "").replace(/^Rules JSON for /, "");
  const panel = createTargetingPanel({options, textarea, label});
  textarea.before(panel.element);
  if (textarea.dataset.environment) panels[textarea.dataset.environment] = panel;
}

const data = document.getElementById("evaluate-data");
if (data) {
  const {urls, environments} = JSON.parse(data.textContent);
  mountEvaluateAs({urls, environments, onExplained: (body) => {
    for (const [env, answer] of Object.entries(body.environments)) {
      if (panels[env]) panels[env].editor.highlight(answer.decidingRule, answer.rules);
    }
  }});
}
