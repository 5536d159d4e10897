/* fibroclass interactive report: sortable/filterable tables and the well panel of the plate heatmaps. */
(function () {
  "use strict";

  function cellValue(row, i, numeric) {
    var td = row.children[i];
    if (!td) return numeric ? NaN : "";
    if (numeric) {
      var v = td.getAttribute("data-v");
      return v === null || v === "" ? NaN : parseFloat(v);
    }
    return td.textContent.trim().toLowerCase();
  }

  function sortTable(table, th, i) {
    var numeric = th.getAttribute("data-kind") === "num";
    var asc = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, i, numeric), y = cellValue(b, i, numeric);
      if (numeric) {
        if (isNaN(x) && isNaN(y)) return 0;
        if (isNaN(x)) return 1;  // missing values last, whichever the direction
        if (isNaN(y)) return -1;
        return asc ? x - y : y - x;
      }
      return asc ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function initTables() {
    document.querySelectorAll("table.fc-sortable").forEach(function (table) {
      table.querySelectorAll("thead th").forEach(function (th, i) {
        th.addEventListener("click", function () { sortTable(table, th, i); });
      });
    });
    document.querySelectorAll("input.fc-filter").forEach(function (box) {
      var table = document.getElementById(box.getAttribute("data-table"));
      if (!table) return;
      box.addEventListener("input", function () {
        var q = box.value.trim().toLowerCase();
        Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
          r.style.display = !q || r.textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
        });
      });
    });
  }

  var thumbs = null, pinned = null;

  function thumbsOf() {
    if (thumbs === null) {
      var el = document.getElementById("fc-thumbs");
      try { thumbs = el ? JSON.parse(el.textContent) : {}; } catch (e) { thumbs = {}; }
    }
    return thumbs;
  }

  function showWell(pt, pin) {
    var cd = pt && pt.customdata;
    if (!cd || !cd[0]) return;
    if (pinned && !pin) return;
    var img = document.getElementById("fc-well-thumb");
    var info = document.getElementById("fc-well-info");
    if (!img || !info) return;
    var src = thumbsOf()[cd[0]];
    if (src) { img.src = src; img.hidden = false; } else { img.hidden = true; img.removeAttribute("src"); }
    info.innerHTML = cd[1] + (pin ? "<br><i>pinned: click the well again to release</i>" : "");
    info.setAttribute("data-well", cd[0]);
  }

  /* Called by each plate heatmap once Plotly has drawn it (post_script of its div). */
  window.fcWirePlate = function (id) {
    var gd = document.getElementById(id);
    if (!gd || !gd.on) return;
    gd.on("plotly_hover", function (ev) { showWell(ev.points[0], false); });
    gd.on("plotly_click", function (ev) {
      var key = ev.points[0].customdata && ev.points[0].customdata[0];
      pinned = pinned === key ? null : key;
      showWell(ev.points[0], !!pinned);
    });
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", initTables);
  else initTables();
})();
