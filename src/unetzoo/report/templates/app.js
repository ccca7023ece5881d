{% raw %}
// unetzoo report pages: the sortable, paged per-image table and the picture viewer.
// Data comes from the JSON element #page-data; nothing is fetched.
(function () {
  "use strict";
  var source = document.getElementById("page-data");
  var data = source ? JSON.parse(source.textContent) : null;
  var state = { col: -1, dir: 1, page: 0, filter: "", order: [] };
  var toastTimer = null;

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  var counted = {};
  ((data && data.count_columns) || []).forEach(function (c) { counted[c] = true; });
  function fmt(value, column) {
    if (value === null || value === undefined) return "\u2013";
    if (typeof value !== "number") return esc(value);
    if (counted[column]) return value.toLocaleString();
    var text = value.toFixed(4);
    if (column && column.indexOf("\u0394") === 0 && value > 0) text = "+" + text;
    return text;
  }
  function toast(text) {
    var box = document.getElementById("toast");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.hidden = true; }, 4000);
  }

  // -- pictures ---------------------------------------------------------------------------
  function stack(asset, layer, kind, zoomed) {
    var z = zoomed && asset.zoom ? asset.zoom : null;
    var ratio = z ? ((z[2] - z[0]) * asset.width) + " / " + ((z[3] - z[1]) * asset.height)
                  : asset.width + " / " + asset.height;
    var frame = "";
    if (z) {
      var w = z[2] - z[0], h = z[3] - z[1];
      frame = ' style="width:' + (100 / w) + "%;height:" + (100 / h) + "%;left:" +
        (-100 * z[0] / w) + "%;top:" + (-100 * z[1] / h) + '%"';
    }
    var html = '<div class="stack ' + kind + '" style="aspect-ratio:' + ratio + '"><div class="frame"' +
      frame + '><img class="base" alt="" src="' + esc(asset.image) + '">';
    if (layer) html += '<img class="layer" alt="" src="' + esc(layer) + '">';
    return html + "</div></div>";
  }
  function panel(asset, layer, kind, title, zoomed) {
    return '<figure class="panel">' + stack(asset, layer, kind, zoomed) +
      "<figcaption>" + esc(title) + "</figcaption></figure>";
  }

  var viewer = { name: null, zoomed: false };
  function openViewer(name) {
    var index = data && data.pictured ? data.pictured[name] : undefined;
    if (index === undefined) {
      toast("No pictures of " + name + ": pictures are made for the gallery's images and, " +
            "in small evaluations, every image (unetzoo report --overlays N).");
      return;
    }
    var asset = data.assets[index];
    viewer.name = name;
    var box = document.getElementById("viewer");
    var sources = data.sources;
    var several = sources.length > 1;
    var objects = data.instance;
    var parts = [panel(asset, null, "image", "image (" + asset.size[1] + " \u00d7 " + asset.size[0] + ")", viewer.zoomed),
                 panel(asset, asset.truth, "truth", objects ? "true objects" : "ground truth", viewer.zoomed)];
    sources.forEach(function (s) {
      var title = objects ? "predicted objects" : "prediction";
      if (asset.preds[s]) parts.push(panel(asset, asset.preds[s], "pred", several ? title + " " + s : title, viewer.zoomed));
    });
    var legend = "";
    sources.forEach(function (s) {
      var title = objects ? "object errors" : "errors: TP green, FP red, FN blue";
      if (asset.errors[s]) parts.push(panel(asset, asset.errors[s], "error", several ? (objects ? "object errors " : "errors ") + s : title, viewer.zoomed));
      var k = (asset.objects || {})[s];
      if (k) {
        legend += '<p class="legend" data-testid="viewer-objects">' + (several ? esc(s) + ": " : "") +
          k.n_true + " true, " + k.n_pred + " predicted:" +
          '<i style="background:#28c83c"></i>' + k.tp + " matched" +
          '<i style="background:#e62828"></i>' + k.fp + " extra" +
          '<i style="background:#285af0"></i>' + k.fn + " missed;" +
          '<i style="background:#dc32dc"></i>' + k.merged + " merged" +
          '<i style="background:#ffa500"></i>' + k.split + " split" +
          " (a merged or split object is drawn in that colour whatever its match)</p>";
      }
    });
    var maps = "";
    sources.forEach(function (s) {
      (asset.maps[s] || []).forEach(function (m) {
        maps += '<figure class="panel"><div class="stack" style="aspect-ratio:' + asset.width + " / " + asset.height +
          '"><div class="frame"><img class="base" alt="" src="' + esc(m[1]) + '"></div></div><figcaption>' +
          esc((several ? s + ": " : "") + m[0]) + "</figcaption></figure>";
      });
    });
    var row = findRow(name);
    var scores = "";
    if (row) {
      scores = data.columns.slice(1).map(function (c, i) { return esc(c) + " " + fmt(row[i + 1], c); }).join(" \u00b7 ");
    }
    var mismatch = [];
    sources.forEach(function (s, i) {
      var again = asset.scores[s];
      var col = data.score_columns ? data.score_columns[i] : data.columns.indexOf(data.metric);
      if (row && again !== undefined && row[col] !== null && Math.abs(again - row[col]) > 1e-3) {
        mismatch.push((several ? s + ": " : "") + "re-predicted " + data.metric + " " + again.toFixed(4));
      }
    });
    box.querySelector(".box").innerHTML =
      '<div class="bar"><h2>' + esc(name) + "</h2>" +
      (asset.zoom ? '<button type="button" data-act="zoom">' + (viewer.zoomed ? "whole image" : "zoom on errors") + "</button>" : "") +
      '<label class="pageinfo">layers <input type="range" min="0" max="100" value="' +
      Math.round(100 * layerOpacity()) + '" data-act="opacity"></label>' +
      '<button type="button" data-act="prev" title="previous (\u2190)">\u2039 prev</button>' +
      '<button type="button" data-act="next" title="next (\u2192)">next \u203a</button>' +
      '<button type="button" data-act="close" title="close (Esc)">close \u2715</button>' +
      '<div class="scores">' + scores + (mismatch.length ? ' <span class="tag warn">' + esc(mismatch.join("; ")) +
      " (differs from the evaluation)</span>" : "") + "</div></div>" +
      '<div class="panels" data-testid="viewer-panels">' + parts.join("") + "</div>" + legend +
      (maps ? "<h3>" + (maps.indexOf(">gate ") >= 0 ? "attention maps" : "side outputs") +
        " (foreground probability, blue 0 to red 1)</h3><div class=\"maps\">" + maps + "</div>" : "");
    box.hidden = false;
    box.setAttribute("data-name", name);
    fitPanels(box.querySelector("[data-testid=viewer-panels]"), parts.length, asset);
  }
  function fitPanels(grid, count, asset) {
    // the column count that shows the panels largest within the window; true pixels
    // (no smoothing) once a picture is shown at twice its size or more
    var z = viewer.zoomed && asset.zoom ? asset.zoom : [0, 0, 1, 1];
    var ratio = ((z[2] - z[0]) * asset.width) / ((z[3] - z[1]) * asset.height);
    var width = grid.clientWidth, height = Math.max(240, window.innerHeight - 150);
    var best = { cols: 1, size: 0 };
    for (var cols = 1; cols <= count; cols++) {
      var rows = Math.ceil(count / cols);
      var w = Math.min((width - 10 * (cols - 1)) / cols, ((height - 28 * rows) / rows) * ratio);
      if (w > best.size) best = { cols: cols, size: w };
    }
    grid.style.setProperty("--cols", best.cols);
    grid.style.maxWidth = Math.ceil(best.cols * best.size + 10 * (best.cols - 1)) + "px";
    var shown = best.size / ((z[2] - z[0]) * asset.width);
    grid.classList.toggle("pixelated", shown >= 2);
  }
  function closeViewer() {
    document.getElementById("viewer").hidden = true;
    viewer.name = null;
  }
  function layerOpacity() {
    var v = getComputedStyle(document.documentElement).getPropertyValue("--layer-opacity");
    return v ? parseFloat(v) : 0.55;
  }
  function step(delta) {
    // the next pictured image in the table's current order (else in gallery order)
    var names = state.order.map(function (i) { return data.rows[i][0]; })
      .filter(function (n) { return data.pictured[n] !== undefined; });
    if (!names.length) names = data.assets.map(function (a) { return a.name; });
    var at = names.indexOf(viewer.name);
    var next = names[(at + delta + names.length) % names.length];
    if (next !== undefined) openViewer(next);
  }

  // -- the table ----------------------------------------------------------------------------
  var rowIndex = null;
  function findRow(name) {
    if (!rowIndex) {
      rowIndex = {};
      data.rows.forEach(function (r, i) { rowIndex[r[0]] = i; });
    }
    var i = rowIndex[name];
    return i === undefined ? null : data.rows[i];
  }
  function computeOrder() {
    var rows = data.rows;
    var filter = state.filter.toLowerCase();
    var order = [];
    for (var i = 0; i < rows.length; i++) {
      if (!filter || String(rows[i][0]).toLowerCase().indexOf(filter) >= 0) order.push(i);
    }
    if (state.col >= 0) {
      var c = state.col, d = state.dir;
      order.sort(function (a, b) {
        var x = rows[a][c], y = rows[b][c];
        if (x === y) return a - b;
        if (x === null) return 1;  // missing values last whichever the direction
        if (y === null) return -1;
        return (x < y ? -1 : 1) * d;
      });
    }
    state.order = order;
  }
  function renderTable() {
    var table = document.getElementById("table");
    if (!table) return;
    var size = data.page_rows;
    var pages = Math.max(1, Math.ceil(state.order.length / size));
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * size;
    var html = "";
    state.order.slice(start, start + size).forEach(function (i) {
      var r = data.rows[i];
      var pictured = data.pictured[r[0]] !== undefined;
      html += '<tr data-name="' + esc(r[0]) + '"' + (pictured ? ' class="pictured"' : "") + ">" +
        r.map(function (v, j) {
          var col = data.columns[j];
          var cls = j === 0 ? "name" : (col.indexOf("\u0394") === 0 && v ? (v > 0 ? "pos" : "neg") : "");
          return '<td class="' + cls + '">' + (j === 0 ? esc(v) : fmt(v, col)) + "</td>";
        }).join("") + "</tr>";
    });
    table.tBodies[0].innerHTML = html;
    var heads = table.tHead.rows[0].cells;
    for (var j = 0; j < heads.length; j++) {
      heads[j].setAttribute("aria-sort", j === state.col ? (state.dir > 0 ? "ascending" : "descending") : "none");
    }
    document.getElementById("pageinfo").textContent = state.order.length ?
      "rows " + (start + 1).toLocaleString() + "\u2013" + Math.min(start + size, state.order.length).toLocaleString() +
      " of " + state.order.length.toLocaleString() + " \u00b7 page " + (state.page + 1) + " of " + pages : "no rows";
    document.getElementById("prev-page").disabled = state.page === 0;
    document.getElementById("next-page").disabled = state.page >= pages - 1;
  }
  function sortBy(col) {
    // first click on a metric: worst (lowest) first; again: best first
    state.dir = state.col === col ? -state.dir : 1;
    state.col = col;
    state.page = 0;
    computeOrder();
    renderTable();
  }
  function setupTable() {
    var table = document.getElementById("table");
    if (!table || !data) return;
    var head = "<tr>" + data.columns.map(function (c, j) {
      return '<th scope="col" aria-sort="none"><button type="button" data-col="' + j + '">' + esc(c) + "</button></th>";
    }).join("") + "</tr>";
    table.tHead.innerHTML = head;
    table.tHead.addEventListener("click", function (e) {
      var b = e.target.closest("button[data-col]");
      if (b) sortBy(parseInt(b.getAttribute("data-col"), 10));
    });
    table.tBodies[0].addEventListener("click", function (e) {
      var tr = e.target.closest("tr[data-name]");
      if (tr) openViewer(tr.getAttribute("data-name"));
    });
    document.getElementById("prev-page").addEventListener("click", function () { state.page--; renderTable(); });
    document.getElementById("next-page").addEventListener("click", function () { state.page++; renderTable(); });
    document.getElementById("filter").addEventListener("input", function (e) {
      state.filter = e.target.value; state.page = 0; computeOrder(); renderTable();
    });
    computeOrder();
    renderTable();
  }

  // -- wiring ----------------------------------------------------------------------------
  document.addEventListener("click", function (e) {
    var act = e.target.closest("[data-act]");
    if (act && act.tagName === "BUTTON") {
      var what = act.getAttribute("data-act");
      if (what === "close") closeViewer();
      else if (what === "prev") step(-1);
      else if (what === "next") step(1);
      else if (what === "zoom") { viewer.zoomed = !viewer.zoomed; openViewer(viewer.name); }
      return;
    }
    var card = e.target.closest(".card[data-name]");
    if (card) { openViewer(card.getAttribute("data-name")); return; }
    if (e.target.id === "viewer") closeViewer();
  });
  document.addEventListener("input", function (e) {
    if (e.target.getAttribute && e.target.getAttribute("data-act") === "opacity") {
      document.documentElement.style.setProperty("--layer-opacity", e.target.value / 100);
    }
  });
  document.addEventListener("keydown", function (e) {
    if (document.getElementById("viewer").hidden) {
      var card = document.activeElement && document.activeElement.closest ? document.activeElement.closest(".card[data-name]") : null;
      if (card && e.key === "Enter") openViewer(card.getAttribute("data-name"));
      return;
    }
    if (e.key === "Escape") closeViewer();
    else if (e.key === "ArrowRight") step(1);
    else if (e.key === "ArrowLeft") step(-1);
  });
  if (data) {
    window.unetzooReport = { open: openViewer, sortBy: sortBy, state: state };
    setupTable();
  }
})();
{% endraw %}
