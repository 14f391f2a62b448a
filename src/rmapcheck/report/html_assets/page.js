// rmapcheck: draws one step of a counterexample from its JSON snapshot.
// The data is in <script id="rmapcheck-data">; every kernel object is named
// by its slab cache and allocation serial (anon_vma#3), the same in every
// step, and drawn with the colour that name hashes to.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("rmapcheck-data").textContent);
  var SVGNS = "http://www.w3.org/2000/svg";
  var steps = D.steps;
  var cur = 0;
  // The finding's own objects (outlined red) and the others it involves (orange).
  var primary = {}, involved = {};
  D.findings.forEach(function (f) {
    if (f.object) primary[f.object] = true;
    f.involved.forEach(function (o) { involved[o] = true; });
  });

  // FNV-1a, mixed, spread by the golden angle: neighbouring names get distant hues.
  function hue(name) {
    var h = 0x811c9dc5;
    for (var i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ (h >>> 16), 0x45d9f3b);
    h = (h ^ (h >>> 16)) >>> 0;
    return Math.round((h % 1000) * 137.508) % 360;
  }
  function colour(name, light) {
    return name ? "hsl(" + hue(name) + ",62%," + (light || 80) + "%)" : "#f0f0f0";
  }
  function h(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function s(parent, tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }
  function tip(node, text) { s(node, "title", {}, text); }
  // Name an element after the object it draws; outline the finding's objects.
  function mark(node, name) {
    if (!name) return node;
    node.setAttribute("data-obj", name);
    if (primary[name]) node.classList.add("hl");
    else if (involved[name]) node.classList.add("hl2");
    return node;
  }
  function chip(name, freed) {
    var c = mark(h("span", {"class": "obj" + (freed ? " freed" : "")}, name), name);
    c.style.background = colour(name);
    return c;
  }
  function clear(id) { var e = document.getElementById(id); while (e.firstChild) e.removeChild(e.firstChild); return e; }
  function none(parent, text) { parent.appendChild(h("p", {"class": "none"}, text)); }

  // -- the step list ---------------------------------------------------------
  var list = document.getElementById("step-list");
  var marks = {};  // step -> [[class, text]]
  D.findings.forEach(function (f) {
    (marks[f.step] = marks[f.step] || []).push(["", f.property]);
    if (f.allocated) (marks[f.allocated[0]] = marks[f.allocated[0]] || []).push(["alloc", "alloc " + f.object]);
    if (f.freed && !f.reused) (marks[f.freed[0]] = marks[f.freed[0]] || []).push(["free", "free " + f.object]);
  });
  steps.forEach(function (st, i) {
    var li = h("li", {"value": String(st.step), "data-step": String(st.step)}, st.op + "  \u2192 " + st.result);
    if (st.step <= D.setup) li.classList.add("setup");
    (marks[st.step] || []).forEach(function (m) { li.appendChild(h("span", {"class": "tag " + m[0]}, m[1])); });
    li.addEventListener("click", function () { go(i); });
    list.appendChild(li);
  });
  document.getElementById("step-count").textContent = String(steps.length);

  // -- the address space -----------------------------------------------------
  var CELL = 44, LEFT = 64;
  function drawSpace(st) {
    var svg = clear("space");
    var folios = {};
    st.folios.forEach(function (f) { folios[f.name] = f; });
    var width = LEFT + D.pages * CELL + 20;
    var y = 8;
    D.regions.forEach(function (r) {
      s(svg, "rect", {x: LEFT + r.at * CELL + 1, y: y, width: r.pages * CELL - 2, height: 16, fill: "#e8edf2", stroke: "#9aa"});
      s(svg, "text", {x: LEFT + r.at * CELL + 5, y: y + 12}, r.name);
    });
    y += 30;
    for (var p = 0; p < D.pages; p++) s(svg, "text", {x: LEFT + p * CELL + CELL / 2 - 4, y: y, "class": "small"}, (p % 16).toString(16));
    y += 8;
    if (!st.processes.length) { s(svg, "text", {x: 8, y: y + 20}, "no processes"); y += 30; }
    st.processes.forEach(function (proc) {
      s(svg, "text", {x: 6, y: y + 18, "class": "head"}, proc.name);
      s(svg, "text", {x: 6, y: y + 32, "class": "small"}, "pid " + proc.pid);
      s(svg, "line", {x1: LEFT, x2: LEFT + D.pages * CELL, y1: y + 14, y2: y + 14, stroke: "#bbb"});
      proc.vmas.forEach(function (v) {
        var g = mark(s(svg, "g", {}), v.name);
        var r = s(g, "rect", {x: LEFT + v.start * CELL + 1, y: y, width: (v.end - v.start) * CELL - 2, height: 28, rx: 4,
          fill: colour(v.anon_vma), "class": "vma" + (v.freed ? " freed" : "")});
        mark(r, v.name);
        var letter = v.label.split(" ").pop();
        s(g, "text", {x: LEFT + v.start * CELL + 5, y: y + 12}, letter + " " + v.prot + (v.mergeable ? " mg" : ""));
        s(g, "text", {x: LEFT + v.start * CELL + 5, y: y + 24, "class": "small"},
          (v.anon_vma ? v.anon_vma : "no anon_vma") + (v.pgoff !== v.start ? " pgoff " + v.pgoff : ""));
        tip(g, v.name + " (" + v.label + ") [" + v.start + "," + v.end + ") " + v.prot + " pgoff " + v.pgoff +
          "\nanon_vma " + (v.anon_vma || "none") + "\nchains: " + (v.chains.join(", ") || "none"));
      });
      var py = y + 34;
      proc.ptes.forEach(function (pte) {
        var x = LEFT + pte.page * CELL + 3;
        var f = folios[pte.folio];
        var g = s(svg, "g", {});
        var r = s(g, "rect", {x: x, y: py, width: CELL - 6, height: 22, rx: 3,
          fill: pte.zero ? "#fff" : colour(pte.folio, 88),
          "class": "page" + (pte.writable ? "" : " ro") + (f && f.freed ? " freed" : "")});
        if (!pte.zero) mark(r, pte.folio);
        s(g, "text", {x: x + 4, y: py + 15}, pte.zero ? "z" : (pte.migration ? "m" : "") + (f ? f.symbol : "?"));
        tip(g, (pte.zero ? "the zero page" : pte.folio + (f ? " pfn " + f.pfn + ", mapcount " + f.mapcount +
          ", refcount " + f.refcount + (f.ksm ? ", KSM page" : "") + ", holds " + f.content : "")) +
          (pte.migration ? "\na migration entry" : "") + (pte.writable ? "\nwritable PTE" : "\nread-only PTE"));
        if (f && f.mapping) {
          var m = s(svg, "rect", {x: x, y: py + 25, width: CELL - 6, height: 14, rx: 2, fill: colour(f.mapping),
            "class": "map"});
          mark(m, f.mapping);
          var av = null;
          st.anon_vmas.forEach(function (a) { if (a.name === f.mapping) av = a; });
          s(svg, "text", {x: x + 3, y: py + 36, "class": "small" + (av && av.freed ? " freed" : "")},
            f.mapping_kind === "ksm" ? "KSM" : (av ? av.symbol : "?"));
          tip(m, pte.folio + "->mapping = " + f.mapping + (av && av.freed ? " (freed)" : ""));
        }
      });
      y += 86;
    });
    svg.setAttribute("width", width);
    svg.setAttribute("height", y);
    svg.setAttribute("viewBox", "0 0 " + width + " " + y);
  }

  // -- the anon_vma forest ----------------------------------------------------
  var BOX = 290, GAP = 22, LINE = 14;
  function drawForest(st) {
    var svg = clear("forest");
    var avs = st.anon_vmas, byName = {}, kids = {}, roots = [];
    avs.forEach(function (a) { byName[a.name] = a; kids[a.name] = []; });
    avs.forEach(function (a) {
      if (a.parent !== a.name && byName[a.parent]) kids[a.parent].push(a); else roots.push(a);
    });
    if (!avs.length) {
      svg.setAttribute("width", 300); svg.setAttribute("height", 40);
      s(svg, "text", {x: 10, y: 24}, "no anon_vma");
      return;
    }
    // Leaves left to right, each parent centred over its children, one row per depth.
    var pos = {}, next = 0, rowH = [], seen = {};
    function height(a) { return 22 + LINE * (1 + (a.lock ? 1 : 0) + Math.max(a.chains.length, 1)); }
    function place(a, depth) {
      if (seen[a.name]) return pos[a.name].x;
      seen[a.name] = true;
      rowH[depth] = Math.max(rowH[depth] || 0, height(a));
      var xs = kids[a.name].map(function (c) { return place(c, depth + 1); });
      var x = xs.length ? (Math.min.apply(null, xs) + Math.max.apply(null, xs)) / 2 : (next++) * (BOX + GAP);
      pos[a.name] = {x: x, depth: depth};
      return x;
    }
    roots.forEach(function (r) { place(r, 0); });
    var rowY = [10];
    for (var d = 1; d <= rowH.length; d++) rowY[d] = rowY[d - 1] + rowH[d - 1] + 46;
    var width = next * (BOX + GAP) + 20, top = rowY[rowH.length] + 4;
    function at(a) { return {x: 10 + pos[a.name].x, y: rowY[pos[a.name].depth]}; }
    avs.forEach(function (a) {
      var p = at(a);
      if (byName[a.parent] && a.parent !== a.name) {
        var q = at(byName[a.parent]);
        s(svg, "path", {d: "M" + (p.x + BOX / 2) + "," + p.y + " L" + (q.x + BOX / 2) + "," + (q.y + height(byName[a.parent])),
          "class": "edge", "marker-end": "url(#arrow)"});
      }
      if (byName[a.root] && a.root !== a.parent && a.root !== a.name) {
        var r = at(byName[a.root]);
        s(svg, "path", {d: "M" + (p.x + BOX - 14) + "," + p.y + " C" + (p.x + BOX + 30) + "," + (p.y - 40) + " " +
          (r.x + BOX + 30) + "," + (r.y + 20) + " " + (r.x + BOX) + "," + (r.y + 14), "class": "edge root"});
      }
    });
    avs.forEach(function (a) {
      var p = at(a), g = mark(s(svg, "g", {}), a.name);
      var box = s(g, "rect", {x: p.x, y: p.y, width: BOX, height: height(a), rx: 5, fill: colour(a.name),
        "class": "node" + (a.freed ? " freed" : "")});
      mark(box, a.name);
      s(g, "text", {x: p.x + 6, y: p.y + 15, "class": "head" + (a.freed ? " freed" : "")},
        a.symbol + "  " + a.name + (a.freed ? "  (freed)" : ""));
      var ty = p.y + 15 + LINE;
      s(g, "text", {x: p.x + 6, y: ty, "class": "small"},
        a.counters.map(function (c) { return c[0] + " " + c[1]; }).join("  "));
      if (a.lock) { ty += LINE; s(g, "text", {x: p.x + 6, y: ty, "class": "small"}, "rwsem held: " + a.lock); }
      if (!a.chains.length) { ty += LINE; s(g, "text", {x: p.x + 6, y: ty, "class": "small"}, "no chains"); }
      a.chains.forEach(function (c) {
        ty += LINE;
        s(g, "text", {x: p.x + 6, y: ty, "class": "small"}, "\u2194 " + (c.label || "(no vma)") +
          (c.vma ? " [" + c.start + "," + c.end + ")" + (c.pgoff !== c.start ? " pgoff " + c.pgoff : "") : ""));
      });
      tip(g, a.name + ": root " + a.root + ", parent " + a.parent + "\nchains: " +
        a.chains.map(function (c) { return c.name + " -> " + (c.vma || "none"); }).join(", "));
      if (a.root === a.name) s(g, "text", {x: p.x + BOX - 34, y: p.y + 15, "class": "small"}, "root");
    });
    var defs = s(svg, "defs", {});
    var mk = s(defs, "marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto"});
    s(mk, "path", {d: "M0,0 L10,5 L0,10 z", fill: "#555"});
    svg.setAttribute("width", width);
    svg.setAttribute("height", top);
    svg.setAttribute("viewBox", "0 0 " + width + " " + top);
  }

  // -- KSM, kernel threads, holders -------------------------------------------
  function table(parent, head, rows) {
    var t = h("table"), tr = h("tr");
    head.forEach(function (x) { tr.appendChild(h("th", {}, x)); });
    t.appendChild(tr);
    rows.forEach(function (row) {
      var r = h("tr");
      row.forEach(function (x) { var td = h("td"); if (typeof x === "string") td.textContent = x; else if (x) td.appendChild(x); r.appendChild(td); });
      t.appendChild(r);
    });
    parent.appendChild(t);
  }
  function drawKsm(st) {
    var box = clear("ksm");
    document.getElementById("ksm-section").style.display = st.ksm ? "" : "none";
    if (!st.ksm) return;
    var k = st.ksm;
    table(box, Object.keys(k.counters), [Object.keys(k.counters).map(function (n) { return String(k.counters[n]); })]);
    box.appendChild(h("h3", {}, "stable tree"));
    if (!k.stable_tree.length) none(box, "empty");
    function node(n, parent) {
      var li = h("li");
      li.appendChild(chip(n.name, n.freed));
      li.appendChild(document.createTextNode(" " + n.kind + (n.kind === "chain" ? "" : ", kpfn " + n.kpfn +
        ", rmap_hlist_len " + n.rmap_hlist_len + " \u2192 ")));
      if (n.page) li.appendChild(chip(n.page));
      var ul = h("ul");
      (n.items || []).forEach(function (r) { var x = h("li"); x.appendChild(chip(r)); ul.appendChild(x); });
      (n.dups || []).forEach(function (d) { node(d, ul); });
      li.appendChild(ul);
      parent.appendChild(li);
    }
    var ul = h("ul");
    k.stable_tree.forEach(function (n) { node(n, ul); });
    box.appendChild(ul);
    box.appendChild(h("h3", {}, "unstable tree"));
    if (!k.unstable_tree.length) none(box, "empty");
    k.unstable_tree.forEach(function (r) { box.appendChild(chip(r)); box.appendChild(document.createTextNode(" ")); });
    box.appendChild(h("h3", {}, "rmap_items"));
    if (!k.rmap_items.length) none(box, "none");
    else table(box, ["rmap_item", "process", "page", "state", "anon_vma", "stable node"], k.rmap_items.map(function (r) {
      return [chip(r.name, r.freed), r.proc, r.place, r.state || "-", r.anon_vma ? chip(r.anon_vma) : "-",
        r.stable_node ? chip(r.stable_node) : "-"];
    }));
    box.appendChild(h("p", {}, "mm slots: " + (k.mm_slots.map(function (m) { return m.name + " (" + m.proc + ")"; }).join(", ") || "none")));
  }
  function drawKthreads(st) {
    var box = clear("kthreads"), all = st.migrations.concat(st.walks);
    document.getElementById("kthread-section").style.display = all.length ? "" : "none";
    all.forEach(function (t) {
      var d = h("div");
      d.appendChild(h("b", {}, "kthread " + t.number + ": " + t.kind + " of "));
      d.appendChild(chip(t.folio));
      d.appendChild(document.createTextNode(", phase " + t.phase));
      var ul = h("ul");
      t.references.forEach(function (r) {
        var li = h("li");
        li.appendChild(chip(r.object, r.freed));
        li.appendChild(document.createTextNode(" ->" + r.field + ": " + r.what));
        ul.appendChild(li);
      });
      if (!t.references.length) ul.appendChild(h("li", {"class": "none"}, "no references"));
      d.appendChild(ul);
      box.appendChild(d);
    });
  }
  function drawHolders(st) {
    var box = clear("holders");
    document.getElementById("holder-box").style.display = D.findings.length ? "" : "none";
    if (!st.holders.length) none(box, "the finding's objects do not exist yet in this step");
    st.holders.forEach(function (o) {
      var p = h("p");
      p.appendChild(chip(o.object, o.freed));
      p.appendChild(document.createTextNode((o.freed ? " freed" : "") + ": " +
        Object.keys(o.counters).map(function (c) { return c + " " + o.counters[c]; }).join(", ")));
      box.appendChild(p);
      var ul = h("ul");
      if (!o.holders.length) ul.appendChild(h("li", {"class": "none"}, "nothing points to it"));
      o.holders.forEach(function (x) {
        var li = h("li");
        if (x.object) li.appendChild(chip(x.object)); else li.appendChild(document.createTextNode(x.name));
        var rest = x.object ? x.name.replace("(" + x.object + ")", "").replace(x.object, "").trim() : "";
        li.appendChild(document.createTextNode((rest ? " " + rest : "") + " ->" + x.field));
        ul.appendChild(li);
      });
      box.appendChild(ul);
    });
  }

  // -- the operation and the finding ------------------------------------------
  function drawOp(st) {
    var box = clear("op");
    box.appendChild(h("div", {}, "step " + st.step + (st.step <= D.setup ? " (setup)" : "") +
      (st.line ? ", line " + st.line : "")));
    box.appendChild(h("div", {"class": "optext"}, st.op));
    box.appendChild(h("div", {"class": "result"}, "\u2192 " + st.result));
    st.findings.forEach(function (f) {
      box.appendChild(h("p", {"class": "bad"}, f.property + " " + (f.detector ? "found by " + f.detector : "in " + f.function) + ": " + f.message));
    });
  }
  function site(label, at, step) {
    var li = h("li", {}, label + " step " + at[0] + " (" + steps[Math.min(at[0], steps.length) - 1].op + ": " + at[1] + ")");
    if (at[0] === step) { li.classList.add("here"); li.appendChild(document.createTextNode("  \u2190 this step")); }
    return li;
  }
  function drawFinding(st) {
    var box = clear("finding");
    if (!D.findings.length) { none(box, D.verdict); return; }
    D.findings.forEach(function (f) {
      var d = h("div");
      d.appendChild(h("p", {"class": "bad"}, f.property + (f.detector ? " found by " + f.detector : " in " + f.function)));
      d.appendChild(h("p", {}, f.message));
      if (f.object) { var o = h("p", {}, "object: "); o.appendChild(chip(f.object)); d.appendChild(o); }
      var ul = h("ul");
      if (f.allocated && f.allocated[0] > 0) ul.appendChild(site("allocated at", f.allocated, st.step));
      if (f.freed && f.freed[0] > 0) ul.appendChild(site(f.reused ? "freed before (slot reused) at" : "freed at", f.freed, st.step));
      ul.appendChild(site(f.detector ? "found after" : "bad access at", [f.step, f.detector || f.function], st.step));
      d.appendChild(ul);
      if (f.chain.length) {
        d.appendChild(h("div", {}, "call chain, innermost first:"));
        var ol = h("ol", {"class": "chain"});
        f.chain.forEach(function (c) { ol.appendChild(h("li", {}, c)); });
        d.appendChild(ol);
      }
      var det = h("details");
      det.appendChild(h("summary", {}, "report"));
      det.appendChild(h("pre", {}, f.report));
      d.appendChild(det);
      box.appendChild(d);
    });
  }

  // -- stepping ---------------------------------------------------------------
  function go(i) {
    cur = Math.max(0, Math.min(steps.length - 1, i));
    var st = steps[cur];
    document.body.setAttribute("data-step", String(st.step));
    document.getElementById("step-no").textContent = String(st.step);
    Array.prototype.forEach.call(list.children, function (li, j) { li.classList.toggle("current", j === cur); });
    document.getElementById("first").disabled = document.getElementById("prev").disabled = cur === 0;
    document.getElementById("last").disabled = document.getElementById("next").disabled = cur === steps.length - 1;
    drawOp(st); drawSpace(st); drawForest(st); drawKsm(st); drawKthreads(st); drawHolders(st); drawFinding(st);
    if (history.replaceState) history.replaceState(null, "", "#step=" + st.step);
  }
  document.getElementById("first").addEventListener("click", function () { go(0); });
  document.getElementById("prev").addEventListener("click", function () { go(cur - 1); });
  document.getElementById("next").addEventListener("click", function () { go(cur + 1); });
  document.getElementById("last").addEventListener("click", function () { go(steps.length - 1); });
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    var k = e.key;
    if (k === "ArrowRight" || k === "ArrowDown" || k === "j" || k === "n") go(cur + 1);
    else if (k === "ArrowLeft" || k === "ArrowUp" || k === "k" || k === "p") go(cur - 1);
    else if (k === "Home") go(0);
    else if (k === "End") go(steps.length - 1);
    else return;
    e.preventDefault();
  });
  // Hovering an object lights it up wherever it is drawn.
  document.addEventListener("mouseover", function (e) {
    var t = e.target.closest ? e.target.closest("[data-obj]") : null;
    Array.prototype.forEach.call(document.querySelectorAll(".hover"), function (x) { x.classList.remove("hover"); });
    if (!t) return;
    var name = t.getAttribute("data-obj");
    Array.prototype.forEach.call(document.querySelectorAll("[data-obj]"), function (x) {
      if (x.getAttribute("data-obj") === name) x.classList.add("hover");
    });
  });
  var m = /step=(\d+)/.exec(location.hash);
  var start = 0;
  if (m) steps.forEach(function (st, i) { if (st.step === Number(m[1])) start = i; });
  go(start);
})();
