// bakeoff UI: sortable tables and keys, and in a report file routes between the pages stored
// inside it (the charts are SVG drawn by the server). Page HTML is rendered and escaped by the server;
// this script never builds markup from data.
(function () {
  "use strict";

  // a table.sortable sorts by the column whose header is clicked, by each cell's data-v (a number,
  // or text); rows with no value go last. Rows are moved, never rebuilt.
  function sortable(root) {
    root.querySelectorAll("table.sortable").forEach(function (table) {
      var heads = table.querySelectorAll("thead th");
      heads.forEach(function (th, col) {
        if (!th.hasAttribute("data-sort")) return;
        th.addEventListener("click", function (ev) {
          if (ev.target.closest("a")) return;
          var down = th.getAttribute("aria-sort") !== "descending";
          heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
          th.setAttribute("aria-sort", down ? "descending" : "ascending");
          var numeric = th.getAttribute("data-sort") === "num";
          var body = table.tBodies[0];
          var rows = Array.prototype.slice.call(body.rows);
          function key(row) {
            var v = row.cells[col] && row.cells[col].getAttribute("data-v");
            if (v === null || v === "") return null;
            return numeric ? parseFloat(v) : v.toLowerCase();
          }
          rows.sort(function (a, b) {
            var x = key(a), y = key(b);
            if (x === null || y === null) return (x === null) - (y === null);
            var c = x < y ? -1 : x > y ? 1 : 0;
            return down ? -c : c;
          });
          rows.forEach(function (r) { body.appendChild(r); });
        });
      });
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
      sortable(main);
      var target = anchor && document.getElementById(anchor);
      if (target) target.scrollIntoView(); else window.scrollTo(0, 0);
    }
    window.addEventListener("hashchange", show);
    show();
    document.body.setAttribute("data-ready", "1");
  }

  // Keys: an element with data-key="j" is clicked when j is pressed (the item page's next and
  // previous links, the arena's votes), unless the user is typing in a field.
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
      sortable(document);
      document.body.setAttribute("data-ready", "1");
    }
  });
})();
