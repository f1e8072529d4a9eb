// Tokentrail UI behaviour: waterfall collapse/expand and span selection. No inline scripts
// (the Content-Security-Policy forbids them); htmx loads the span detail.
(function () {
  "use strict";

  function rowsAfter(row) {
    // The subtree of `row`: following rows while they are deeper.
    var depth = +row.dataset.depth, out = [], next = row.nextElementSibling;
    while (next && +next.dataset.depth > depth) { out.push(next); next = next.nextElementSibling; }
    return out;
  }

  function setExpanded(row, expanded) {
    var button = row.querySelector(".wf-toggle");
    if (!button) return;
    button.setAttribute("aria-expanded", expanded ? "true" : "false");
    button.textContent = expanded ? "\u25BE" : "\u25B8";
    var hiddenBelow = null; // depth of a collapsed descendant whose subtree stays hidden
    rowsAfter(row).forEach(function (r) {
      var d = +r.dataset.depth;
      if (hiddenBelow !== null && d > hiddenBelow) { r.hidden = true; return; }
      hiddenBelow = null;
      r.hidden = !expanded;
      var b = r.querySelector(".wf-toggle");
      if (expanded && b && b.getAttribute("aria-expanded") === "false") hiddenBelow = d;
    });
  }

  function setAll(expanded) {
    document.querySelectorAll("#wf .wf-row").forEach(function (r) {
      var b = r.querySelector(".wf-toggle");
      if (b) b.setAttribute("aria-expanded", expanded ? "true" : "false");
      if (b) b.textContent = expanded ? "\u25BE" : "\u25B8";
      r.hidden = !expanded && +r.dataset.depth > 0;
    });
  }

  function select(spanId, scroll) {
    var wf = document.getElementById("wf");
    if (!wf || !/^[0-9a-f]{16}$/.test(spanId)) return;
    var row = wf.querySelector('.wf-row[data-span="' + spanId + '"]');
    document.querySelectorAll(".wf-row.selected, .chart .col.selected").forEach(function (el) { el.classList.remove("selected"); });
    if (row) {
      // reveal it: expand collapsed ancestors
      var depth = +row.dataset.depth, prev = row.previousElementSibling;
      while (prev && depth > 0) {
        if (+prev.dataset.depth < depth) {
          depth = +prev.dataset.depth;
          var b = prev.querySelector(".wf-toggle");
          if (b && b.getAttribute("aria-expanded") === "false") setExpanded(prev, true);
        }
        prev = prev.previousElementSibling;
      }
      row.classList.add("selected");
      if (scroll) row.scrollIntoView({ block: "nearest" });
    }
    var col = document.querySelector('.chart .col[data-span="' + spanId + '"]');
    if (col) col.classList.add("selected");
    var url = "/trace/" + wf.dataset.trace + "/span/" + spanId + wf.dataset.query;
    if (window.htmx) {
      window.htmx.ajax("GET", url, { target: "#detail", swap: "innerHTML" });
    } else {
      window.location.href = url;
    }
    history.replaceState(null, "", "#span-" + spanId);
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    var toggle = target.closest(".wf-toggle");
    if (toggle) {
      var row = toggle.closest(".wf-row");
      setExpanded(row, toggle.getAttribute("aria-expanded") !== "true");
      event.preventDefault();
      return;
    }
    var all = target.closest("[data-wf]");
    if (all) { setAll(all.dataset.wf === "expand"); return; }
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    var item = target.closest(".wf-row, .chart .col, .span-link");
    if (item && document.getElementById("wf")) {
      event.preventDefault();
      select(item.dataset.span, !item.classList.contains("wf-row"));
    }
  });

  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el instanceof HTMLSelectElement && el.hasAttribute("data-autosubmit") && el.form) el.form.submit();
  });

  // htmx requests that change something carry the page's form token (CSRF)
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    var verb = (event.detail.verb || "get").toUpperCase();
    if (meta && verb !== "GET" && verb !== "HEAD") event.detail.headers["X-CSRF-Token"] = meta.content;
  });

  document.addEventListener("DOMContentLoaded", function () {
    var match = /^#span-([0-9a-f]{16})$/.exec(window.location.hash);
    if (match) select(match[1], true);
  });
})();
