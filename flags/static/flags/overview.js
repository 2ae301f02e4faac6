// Flags overview: live cell updates over /ws (session auth, one socket per environment) and
// the kill dialog. Everything still works without JavaScript except the live updates.
(function () {
  "use strict";
  var environments = JSON.parse(document.getElementById("ws-environments").textContent);
  var statusText = document.getElementById("live-status");
  var dot = document.getElementById("live-dot");
  var open = 0;

  function setLive() {
    dot.classList.toggle("up", open === environments.length);
    statusText.textContent = open === environments.length ? "Live: changes appear as they happen" : "Reconnecting…";
  }

  function apply(event) {
    if (event.type !== "flag.changed" || !event.flag) return;
    var row = document.querySelector('tr[data-flag="' + CSS.escape(event.flag.key) + '"]');
    if (!row) return;
    var cell = row.querySelector('td[data-env="' + CSS.escape(event.environment) + '"]');
    if (!cell) return;
    // The overview lists active flags unless its "archived" filter says otherwise (data-show).
    var show = row.closest("table").dataset.show || "";
    if (event.action === "deleted" || event.flag.archived) { if (!show) row.remove(); return; }
    if (show === "only" && event.action === "created") { row.remove(); return; }
    // The toggle form posts the version it shows and the state its label promises: keep both in
    // step with what this page displays, or the server refuses the click as stale.
    var version = cell.querySelector('[data-role="version"]');
    if (version && event.flag.version !== undefined) version.value = event.flag.version;
    var status = event.flag.killed ? "killed" : (event.flag.enabled ? "on" : "off");
    if (cell.dataset.status === status) return;
    cell.dataset.status = status;
    var badge = cell.querySelector('[data-role="status"]');
    badge.className = "status " + status;
    badge.textContent = status.toUpperCase();
    var toggle = cell.querySelector('[data-role="toggle"]');
    if (toggle) {
      toggle.disabled = !!event.flag.killed;
      toggle.textContent = event.flag.enabled ? "Turn off" : "Turn on";
      toggle.setAttribute("aria-label", "Turn " + event.flag.key + (event.flag.enabled ? " off" : " on") + " in " + event.environment);
      cell.querySelector('[data-role="toggle-enabled"]').value = event.flag.enabled ? "false" : "true";
    }
    var restore = cell.querySelector('[data-role="restore-form"]');
    if (restore) restore.hidden = !event.flag.killed;
    var kill = cell.querySelector('[data-role="kill"]');
    if (kill) kill.hidden = !!event.flag.killed;
    cell.classList.remove("flash"); void cell.offsetWidth; cell.classList.add("flash");
  }

  function connect(environment, delay) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws?environment=" + encodeURIComponent(environment));
    var up = false;
    socket.onmessage = function (message) {
      var event = JSON.parse(message.data);
      if (event.type === "hello" && !up) { up = true; open += 1; setLive(); delay = 1000; }
      apply(event);
    };
    socket.onclose = function () {
      if (up) { open -= 1; setLive(); }
      setTimeout(function () { connect(environment, Math.min(delay * 2, 15000)); }, delay);
    };
  }
  environments.forEach(function (env) { connect(env, 1000); });

  var dialog = document.getElementById("kill-dialog");
  var form = document.getElementById("kill-form");
  document.addEventListener("click", function (e) {
    var button = e.target.closest('[data-role="kill"]');
    if (!button) return;
    form.action = button.dataset.action;
    document.getElementById("kill-environment").value = button.dataset.env;
    dialog.querySelector('[data-role="kill-flag"]').textContent = button.dataset.flag;
    dialog.querySelector('[data-role="kill-env"]').textContent = button.dataset.env;
    dialog.showModal();
    document.getElementById("kill-reason").focus();
  });
  document.getElementById("kill-cancel").addEventListener("click", function () { dialog.close(); });
})();
