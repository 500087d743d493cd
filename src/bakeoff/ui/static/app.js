// bakeoff UI: draws the charts of a page (Plotly, shipped with the page), and in a report file
// routes between the pages stored inside it. Page HTML is rendered and escaped by the server;
// this script never builds markup from data.
(function () {
  "use strict";

  function drawCharts(root) {
    if (!window.Plotly) return;
    root.querySelectorAll(".chart[data-fig]").forEach(function (el) {
      var fig = JSON.parse(el.getAttribute("data-fig"));
      window.Plotly.newPlot(el, fig.data, fig.layout, { displaylogo: false, responsive: true });
    });
  }

  function b64ToBytes(b64) {
    var bin = atob(b64.trim());
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  async function loadPages() {
    var bytes = b64ToBytes(document.getElementById("pages").textContent);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  async function report() {
    var pages = await loadPages();
    var home = document.body.getAttribute("data-home");
    var main = document.getElementById("main");
    function show() {
      var raw = location.hash.slice(1);
      var key = raw, anchor = null;
      if (!(key in pages) && key.indexOf("#") >= 0) {
        anchor = key.slice(key.indexOf("#") + 1);
        key = key.slice(0, key.indexOf("#"));
      }
      if (!key) key = home;
      var page = pages[key];
      if (page === undefined) {
        main.textContent = "This page is not in the report: " + raw;
        return;
      }
      document.title = page.title + " · bakeoff report";
      main.innerHTML = page.html; // rendered and escaped by bakeoff when the report was written
      drawCharts(main);
      var target = anchor && document.getElementById(anchor);
      if (target) target.scrollIntoView(); else window.scrollTo(0, 0);
    }
    window.addEventListener("hashchange", show);
    show();
    document.body.setAttribute("data-ready", "1");
  }

  // Keys: an element with data-key="j" is clicked when j is pressed (the item page's next and
  // previous links), unless the user is typing in a field.
  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented || e.key.length !== 1) return;
    if (e.target.closest && e.target.closest("input, textarea, select, [contenteditable]")) return;
    var el = document.querySelector('[data-key="' + CSS.escape(e.key) + '"]');
    if (el) {
      e.preventDefault();
      el.click();
    }
  }

  // In a report, whose pages exist once each, the diff / plain buttons switch the item page's view
  // in place (the web app links to ?view=plain instead); a form marked data-autosubmit is sent as
  // soon as one of its inputs changes.
  function onClick(e) {
    var b = e.target.closest && e.target.closest("button[data-view]");
    var box = document.getElementById("side-by-side");
    if (!b || !box) return;
    box.classList.toggle("plain", b.getAttribute("data-view") === "plain");
    document.querySelectorAll("button[data-view]").forEach(function (x) {
      x.classList.toggle("on", x === b);
    });
  }

  function onChange(e) {
    var form = e.target.closest && e.target.closest("form[data-autosubmit]");
    if (form) form.submit();
  }

  document.addEventListener("keydown", onKey);
  document.addEventListener("click", onClick);
  document.addEventListener("change", onChange);

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.getAttribute("data-report")) {
      report();
    } else {
      drawCharts(document);
      document.body.setAttribute("data-ready", "1");
    }
  });
})();
