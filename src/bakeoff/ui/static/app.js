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

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.getAttribute("data-report")) {
      report();
    } else {
      drawCharts(document);
      document.body.setAttribute("data-ready", "1");
    }
  });
})();
