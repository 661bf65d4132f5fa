/* Corral dashboard: draws the Plotly figures embedded as JSON, follows server-sent events
   (a list's live rows, a run's or a job's progress) and reloads a page whose run ended. */
(function () {
  "use strict";

  function drawFigures() {
    document.querySelectorAll("[data-figure]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-figure"));
      if (!source || typeof Plotly === "undefined") { return; }
      var fig = JSON.parse(source.textContent);
      Plotly.newPlot(el, fig.data, fig.layout, {displaylogo: false, responsive: true});
    });
  }

  function setText(root, selector, text) {
    var el = root.querySelector(selector);
    if (el) { el.textContent = text; }
  }

  function setState(root, state) {
    var badge = root.querySelector("[data-state]");
    if (badge && badge.textContent !== state) {
      badge.textContent = state;
      badge.className = "state st-" + state;
    }
  }

  function showRow(root, live) {
    setState(root, live.state);
    var bar = root.querySelector("progress");
    if (bar) { bar.max = live.total || 1; bar.value = live.done; }
    setText(root, "[data-progress]", live.done + " / " + live.total);
    if (live.duration_text) { setText(root, "[data-duration]", live.duration_text); }
  }

  function announce(text) {
    var note = document.getElementById("live-note");
    if (note) { note.textContent = text; }
  }

  function follow(el) {
    var source = new EventSource(el.getAttribute("data-events"));
    var initial = document.querySelector("[data-live-state]");
    var before = initial ? initial.getAttribute("data-live-state") : null;
    source.addEventListener("update", function (event) {
      var data = JSON.parse(event.data);
      if (data.runs) {
        data.runs.forEach(function (live) {
          var row = document.querySelector('tr[data-run="' + CSS.escape(live.id) + '"]');
          if (row) { showRow(row, live); }
        });
      } else {
        showRow(document, data);
        if (before !== null && data.state !== before) { announce("The run is now " + data.state); }
      }
    });
    source.addEventListener("done", function () {
      source.close();
      var state = document.querySelector("[data-live-state]");
      if (state && el.hasAttribute("data-reload")) { window.location.reload(); }
      announce("Live updates ended");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawFigures();
    document.querySelectorAll("[data-events]").forEach(follow);
  });
})();
