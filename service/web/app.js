// lrserve's web page: runs, curves, changes with a preview, a spec playground.
// Our own code, no libraries: the server reduces curves to two points per pixel column (/ui/api/...), this
// script draws them as SVG. Every value from the server goes into the page as text (never as HTML).
"use strict";

(function () {
  // ---- small helpers ----------------------------------------------------------------------------------------

  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2563eb", "#dc2626", "#059669", "#7c3aed", "#d97706", "#0891b2", "#db2777", "#4b5563"];
  const MARKER_COLORS = { change: "#2563eb", reduction: "#ea580c", resume: "#7c3aed" };
  const TOKEN_KEY = "lrserve.token";
  // Live refresh: the page polls (cheap reads; no long-lived connections to keep through proxies).
  const POLL_MS = Number(localStorage.getItem("lrserve.poll_ms")) || 3000;

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.setAttribute("class", v);
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function fmtNum(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "string") return v;
    if (!Number.isFinite(v)) return String(v);
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e-3 && a < 1e5) return String(Number(v.toPrecision(4)));
    return v.toExponential(2).replace("e+", "e");
  }

  function fmtTick(v) {
    const a = Math.abs(v);
    if (v === 0 || (a >= 1e-3 && a < 1e5)) return fmtNum(v);
    const [mant, exp] = v.toExponential(2).split("e");
    return String(Number(mant)) + "e" + Number(exp);
  }

  function fmtStep(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return Number((v / 1e6).toPrecision(3)) + "M";
    if (a >= 1e4) return Number((v / 1e3).toPrecision(3)) + "k";
    return String(Math.round(v * 1000) / 1000);
  }

  function fmtTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { hour12: false });
  }

  function ago(iso) {
    if (!iso) return "–";
    const sec = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (sec < 60) return Math.round(sec) + " s ago";
    if (sec < 3600) return Math.round(sec / 60) + " min ago";
    if (sec < 86400) return Math.round(sec / 3600) + " h ago";
    return Math.round(sec / 86400) + " d ago";
  }

  function enc(id) {
    return encodeURIComponent(id);
  }

  // ---- the API ----------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || "HTTP " + status);
      this.status = status;
      this.problem = problem || {};
    }
  }

  function token() {
    return localStorage.getItem(TOKEN_KEY) || "";
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { title: "Server unreachable", detail: "the server did not answer: " + e.message });
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = { detail: text };
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // ---- who am I ---------------------------------------------------------------------------------------------

  const auth = { open: true, name: null, scopes: [], error: null };

  function canWrite() {
    return auth.scopes.includes("admin");
  }

  async function refreshWhoami() {
    const el = document.getElementById("whoami");
    try {
      Object.assign(auth, await api("GET", "ui/api/whoami"), { error: null });
    } catch (e) {
      Object.assign(auth, { open: false, name: null, scopes: [], error: e.message });
    }
    if (auth.error) el.textContent = "token refused: " + auth.error;
    else if (auth.open) el.textContent = "open server (no tokens): full access";
    else if (!auth.name) el.textContent = "this server needs a token";
    else el.textContent = auth.name + ": " + auth.scopes.join(", ");
    el.className = "who" + (auth.error ? " error" : "");
  }

  function setupToken() {
    const form = document.getElementById("token-form");
    const input = document.getElementById("token-input");
    input.value = token();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      if (value) localStorage.setItem(TOKEN_KEY, value);
      else localStorage.removeItem(TOKEN_KEY);
      await refreshWhoami();
      route();
    });
    document.getElementById("token-forget").addEventListener("click", async () => {
      localStorage.removeItem(TOKEN_KEY);
      input.value = "";
      await refreshWhoami();
      route();
    });
  }

  function writeGuard(button) {
    if (!canWrite()) {
      button.disabled = true;
      button.title = "needs a token with the admin scope";
    }
    return button;
  }

  // ---- the tooltip ------------------------------------------------------------------------------------------

  const tooltip = {
    el: null,
    show(ev, text) {
      const el = this.el || (this.el = document.getElementById("tooltip"));
      el.textContent = text;
      el.hidden = false;
      const x = Math.min(ev.clientX + 14, window.innerWidth - el.offsetWidth - 8);
      const y = Math.min(ev.clientY + 14, window.innerHeight - el.offsetHeight - 8);
      el.style.left = x + "px";
      el.style.top = y + "px";
    },
    hide() {
      if (this.el) this.el.hidden = true;
    },
  };

  // ---- charts -----------------------------------------------------------------------------------------------

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
  }

  function linearTicks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const step = niceStep(hi - lo, count);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return out;
  }

  function logTicks(lo, hi) {
    // lo, hi in log10 units
    const out = [];
    const decades = hi - lo;
    const mults = decades <= 1.2 ? [1, 2, 3, 5, 7] : decades <= 3 ? [1, 2, 5] : [1];
    const every = decades > 8 ? Math.ceil(decades / 6) : 1;
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
      if (mults.length === 1 && e % every !== 0) continue;
      for (const m of mults) {
        const v = Math.log10(m) + e;
        if (v >= lo - 1e-9 && v <= hi + 1e-9) out.push(Math.pow(10, v));
      }
    }
    return out;
  }

  function extent(values, log) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const arr of values) {
      for (const v of arr) {
        if (v === null || !Number.isFinite(v) || (log && v <= 0)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    if (lo === Infinity) return log ? [1e-4, 1] : [0, 1];
    if (log) {
      if (hi / lo < 1.5) return [lo / 1.5, hi * 1.5];
      return [lo / Math.pow(hi / lo, 0.04), hi * Math.pow(hi / lo, 0.04)];
    }
    if (hi === lo) {
      const pad = Math.abs(hi) * 0.1 || 1;
      return [lo - pad, hi + pad];
    }
    const pad = (hi - lo) * 0.05;
    return [lo >= 0 && lo - pad < 0 ? 0 : lo - pad, hi + pad];
  }

  // Split x/y into polyline point strings, breaking at nulls, non-finite values and (log) non-positive values.
  function pathPoints(xs, ys, sx, sy, log, lo, hi) {
    const segments = [];
    let cur = [];
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i];
      const y = ys[i];
      const bad = y === null || !Number.isFinite(y) || (log && y <= 0) || x < lo || x > hi;
      if (bad) {
        if (cur.length) segments.push(cur);
        cur = [];
        continue;
      }
      cur.push(sx(x).toFixed(1) + "," + sy(y).toFixed(1));
    }
    if (cur.length) segments.push(cur);
    return segments.map((seg) => (seg.length === 1 ? [seg[0], seg[0]] : seg).join(" "));
  }

  // A line chart. opts: {width, height, x: {lo, hi, log, label}, y: {log, label, lo?, hi?}, series: [{x, y, color,
  // cls, name}], horizon, markers: [{step, kind, tip}], vlines: [{x, color, tip}], onSelect(lo, hi), hover: bool}
  function lineChart(opts) {
    const W = opts.width;
    const H = opts.height || 260;
    const m = { l: 62, r: 16, t: opts.markers ? 18 : 10, b: 34 };
    const pw = W - m.l - m.r;
    const ph = H - m.t - m.b;
    const xlog = !!opts.x.log;
    const ylog = !!opts.y.log;
    const tx = (v) => (xlog ? Math.log10(v) : v);
    let xlo = tx(opts.x.lo);
    let xhi = tx(opts.x.hi);
    if (!(xhi > xlo)) xhi = xlo + 1;
    const [ylo0, yhi0] =
      opts.y.lo !== undefined ? [opts.y.lo, opts.y.hi] : extent(opts.series.map((se) => se.y), ylog);
    const ylo = ylog ? Math.log10(ylo0) : ylo0;
    const yhi = ylog ? Math.log10(yhi0) : yhi0;
    const sx = (v) => m.l + ((tx(v) - xlo) / (xhi - xlo)) * pw;
    const sy = (v) => m.t + ph - (((ylog ? Math.log10(v) : v) - ylo) / (yhi - ylo || 1)) * ph;

    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: opts.cls || "" });
    const grid = s("g", { class: "grid" });
    const axes = s("g", { class: "axis" });
    const yt = ylog ? logTicks(ylo, yhi) : linearTicks(ylo, yhi, 5);
    for (const v of yt) {
      const y = sy(v);
      grid.appendChild(s("line", { x1: m.l, x2: m.l + pw, y1: y, y2: y }));
      axes.appendChild(s("text", { x: m.l - 6, y: y + 3.5, "text-anchor": "end", text: fmtTick(v) }));
    }
    const xt = xlog ? logTicks(xlo, xhi) : linearTicks(xlo, xhi, Math.max(2, Math.floor(pw / 90)));
    for (const v of xt) {
      const x = sx(v);
      grid.appendChild(s("line", { x1: x, x2: x, y1: m.t, y2: m.t + ph }));
      axes.appendChild(s("text", { x, y: m.t + ph + 15, "text-anchor": "middle", text: xlog ? fmtTick(v) : fmtStep(v) }));
    }
    axes.appendChild(s("path", { d: `M${m.l},${m.t}V${m.t + ph}H${m.l + pw}`, fill: "none" }));
    if (opts.x.label) axes.appendChild(s("text", { x: m.l + pw, y: H - 4, "text-anchor": "end", text: opts.x.label }));
    if (opts.y.label)
      axes.appendChild(
        s("text", { x: 12, y: m.t + ph / 2, transform: `rotate(-90 12 ${m.t + ph / 2})`, "text-anchor": "middle", text: opts.y.label })
      );
    svg.append(grid, axes);

    const clipId = "clip" + Math.random().toString(36).slice(2);
    svg.appendChild(s("clipPath", { id: clipId }, s("rect", { x: m.l, y: m.t - 2, width: pw, height: ph + 4 })));
    const plot = s("g", { "clip-path": `url(#${clipId})` });
    svg.appendChild(plot);
    const xLo = opts.x.lo;
    const xHi = opts.x.hi;
    for (const se of opts.series) {
      for (const pts of pathPoints(se.x, se.y, sx, sy, ylog, xLo, xHi)) {
        plot.appendChild(
          s("polyline", { points: pts, class: "series " + (se.cls || ""), stroke: se.color, dataset: { name: se.name || "" } })
        );
      }
    }
    if (opts.horizon !== undefined && opts.horizon >= opts.x.lo && opts.horizon <= opts.x.hi) {
      const x = sx(opts.horizon + 0.5);
      plot.appendChild(s("line", { class: "horizon", x1: x, x2: x, y1: m.t, y2: m.t + ph }));
      const right = x > m.l + pw - 90; // near the right edge: label on the left of the line
      const label = "horizon " + opts.horizon.toLocaleString("en-US");
      svg.appendChild(s("text", { class: "label", x: right ? x - 3 : x + 3, y: m.t + 10, "text-anchor": right ? "end" : "start", text: label }));
    }
    for (const vl of opts.vlines || []) {
      if (!(vl.x > 0) && xlog) continue;
      const x = sx(vl.x);
      const g = s("g", { class: "marker vline" });
      g.appendChild(s("line", { x1: x, x2: x, y1: m.t, y2: m.t + ph, stroke: vl.color }));
      g.appendChild(s("text", { class: "label", x: x + 3, y: m.t + 10 + (vl.row || 0) * 12, text: vl.label || "" }));
      g.addEventListener("mousemove", (ev) => tooltip.show(ev, vl.tip));
      g.addEventListener("mouseleave", () => tooltip.hide());
      svg.appendChild(g);
    }
    for (const mk of opts.markers || []) {
      if (mk.step < opts.x.lo || mk.step > opts.x.hi) continue;
      const x = sx(mk.step);
      const color = MARKER_COLORS[mk.kind] || "#334155";
      const g = s("g", { class: "marker marker-" + mk.kind, dataset: { step: mk.step, kind: mk.kind } });
      g.appendChild(s("line", { x1: x, x2: x, y1: m.t, y2: m.t + ph, stroke: color }));
      const y = m.t - 2;
      g.appendChild(s("path", { d: `M${x - 6},${y - 10}L${x + 6},${y - 10}L${x},${y}Z`, fill: color }));
      g.appendChild(s("rect", { x: x - 7, y: m.t - 16, width: 14, height: ph + 16, fill: "transparent" }));
      g.addEventListener("mousemove", (ev) => tooltip.show(ev, mk.tip));
      g.addEventListener("mouseleave", () => tooltip.hide());
      svg.appendChild(g);
    }

    if (opts.hover || opts.onSelect) {
      const overlay = s("rect", { x: m.l, y: m.t, width: pw, height: ph, fill: "transparent" });
      const cross = s("line", { class: "crosshair", y1: m.t, y2: m.t + ph, visibility: "hidden" });
      const sel = s("rect", { class: "select", y: m.t, height: ph, visibility: "hidden" });
      svg.insertBefore(overlay, svg.querySelector(".marker"));
      svg.append(cross, sel);
      const toData = (ev) => {
        const r = svg.getBoundingClientRect();
        const px = ((ev.clientX - r.left) / r.width) * W;
        const v = xlo + ((px - m.l) / pw) * (xhi - xlo);
        return { px: Math.max(m.l, Math.min(m.l + pw, px)), v: xlog ? Math.pow(10, v) : v };
      };
      let dragFrom = null;
      overlay.addEventListener("mousemove", (ev) => {
        const { px, v } = toData(ev);
        cross.setAttribute("x1", px);
        cross.setAttribute("x2", px);
        cross.setAttribute("visibility", "visible");
        if (dragFrom !== null) {
          sel.setAttribute("x", Math.min(dragFrom.px, px));
          sel.setAttribute("width", Math.abs(px - dragFrom.px));
          sel.setAttribute("visibility", "visible");
        }
        if (opts.hover) tooltip.show(ev, opts.hover(v));
      });
      overlay.addEventListener("mouseleave", () => {
        cross.setAttribute("visibility", "hidden");
        tooltip.hide();
      });
      if (opts.onSelect) {
        overlay.addEventListener("mousedown", (ev) => {
          dragFrom = toData(ev);
        });
        window.addEventListener("mouseup", (ev) => {
          if (dragFrom === null) return;
          const to = toData(ev);
          const from = dragFrom;
          dragFrom = null;
          sel.setAttribute("visibility", "hidden");
          if (Math.abs(to.px - from.px) > 6) opts.onSelect(Math.min(from.v, to.v), Math.max(from.v, to.v));
        });
      }
    }
    return h("div", { class: "chart" }, svg);
  }

  function legend(items) {
    return h(
      "div",
      { class: "legend" },
      items.map((it) => h("span", {}, h("span", { class: "swatch " + (it.style || ""), style: `border-color:${it.color}` }), it.label))
    );
  }

  // The value of a downsampled series at step v (the nearest point at or before it).
  function valueAt(xs, ys, v) {
    let lo = 0;
    let hi = xs.length - 1;
    if (hi < 0 || v < xs[0]) return null;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (xs[mid] <= v) lo = mid;
      else hi = mid - 1;
    }
    return ys[lo];
  }

  function chartWidth(container) {
    return Math.max(480, Math.min(1240, Math.floor((container && container.clientWidth) || 1000)));
  }

  // ---- the views --------------------------------------------------------------------------------------------

  const main = () => document.getElementById("main");
  let poll = null;
  let viewToken = 0;

  function stopPolling() {
    if (poll) clearInterval(poll);
    poll = null;
  }

  function errorBox(e) {
    const box = h("div", { class: "banner error" }, e.message || String(e));
    if (e.status === 401) box.appendChild(h("div", {}, "This server requires a valid token: enter one at the top right."));
    if (e.status === 403) box.appendChild(h("div", {}, "This token may not do that."));
    if (e.status === 0) box.appendChild(h("div", {}, "Is the server running? Retrying…"));
    return box;
  }

  // ---- runs list ----

  function labelFilterFromHash() {
    const q = location.hash.split("?")[1] || "";
    return new URLSearchParams(q).getAll("label");
  }

  async function runsView(my) {
    const labels = labelFilterFromHash();
    const filter = h("input", {
      id: "label-filter",
      placeholder: "filter by labels: key:value key2:value2",
      size: 40,
      value: labels.join(" "),
    });
    const status = h("span", { class: "muted", id: "runs-status" });
    const table = h("div", { id: "runs-table" });
    const applyFilter = () => {
      const parts = filter.value.split(/[\s,]+/).filter(Boolean);
      const q = new URLSearchParams();
      for (const p of parts) q.append("label", p);
      location.hash = "#/" + (parts.length ? "?" + q.toString() : "");
    };
    filter.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") applyFilter();
    });
    main().replaceChildren(
      h("h1", {}, "Runs"),
      h("div", { class: "row card" }, filter, h("button", { onclick: applyFilter }, "Filter"), h("span", { class: "spacer" }), status),
      table
    );
    const load = async () => {
      const q = new URLSearchParams();
      for (const l of labels) q.append("label", l);
      q.set("limit", "200");
      try {
        const page = await api("GET", "ui/api/runs?" + q.toString());
        if (my !== viewToken) return;
        table.replaceChildren(runsTable(page.runs));
        status.textContent = `${page.runs.length} run(s)${page.next_cursor ? " (first page)" : ""} · refreshed ${new Date().toLocaleTimeString(undefined, { hour12: false })}`;
      } catch (e) {
        if (my !== viewToken) return;
        table.replaceChildren(errorBox(e));
      }
    };
    await load();
    poll = setInterval(load, POLL_MS);
  }

  function labelChips(labels, onClick) {
    return Object.entries(labels || {}).map(([k, v]) =>
      h("span", { class: "chip", title: "filter by " + k + ":" + v, onclick: () => onClick(k + ":" + v) }, k + ":" + v)
    );
  }

  function runsTable(runs) {
    if (!runs.length) return h("p", { class: "muted" }, "No runs yet. Create one with PUT /v1/runs/{id} (see API).");
    const addFilter = (l) => {
      const cur = labelFilterFromHash();
      if (!cur.includes(l)) cur.push(l);
      const q = new URLSearchParams();
      for (const x of cur) q.append("label", x);
      location.hash = "#/?" + q.toString();
    };
    const rows = runs.map((r) =>
      h(
        "tr",
        { dataset: { run: r.run_id } },
        h("td", {}, h("a", { href: "#/runs/" + enc(r.run_id) }, r.run_id)),
        h("td", {}, labelChips(r.labels, addFilter)),
        h("td", {}, r.schedule_type),
        h("td", { class: "num" }, r.horizon < 0 ? "–" : fmtStep(r.horizon), r.total_steps ? h("span", { class: "muted" }, " / " + fmtStep(r.total_steps)) : ""),
        h(
          "td",
          { class: "mono" },
          r.group_names.map((g, i) => h("div", {}, h("span", { class: "muted" }, g + " "), fmtNum(r.current_lr[i])))
        ),
        h(
          "td",
          { class: "mono" },
          r.last_metric ? [r.last_metric.name + " = " + fmtNum(r.last_metric.value), h("span", { class: "muted" }, " @" + r.last_metric.step)] : "–"
        ),
        h("td", { class: "num" }, String(r.revision)),
        h("td", { title: fmtTime(r.updated_at) }, ago(r.updated_at))
      )
    );
    return h(
      "table",
      { class: "runs" },
      h(
        "thead",
        {},
        h("tr", {}, ["Run", "Labels", "Schedule", "Horizon", "Current LR", "Last metric", "Rev", "Updated"].map((t) => h("th", {}, t)))
      ),
      h("tbody", {}, rows)
    );
  }

  // ---- run page ----

  function markerTip(mk) {
    const lines = [`${mk.kind} at step ${mk.step}`, mk.detail];
    if (mk.reason) lines.push("reason: " + mk.reason);
    lines.push("by: " + (mk.actor || "anonymous"), fmtTime(mk.at));
    return lines.join("\n");
  }

  function describeEvent(e) {
    const p = e.payload || {};
    switch (e.kind) {
      case "created": {
        const spec = p.spec || {};
        const groups = (spec.param_groups || []).map((g) => g.name).join(", ");
        return `${(spec.schedule || {}).type || "?"} · groups ${groups}`;
      }
      case "metric":
        return `${p.name} = ${fmtNum(Number(p.value))} at step ${p.step}`;
      case "change": {
        const c = p.change || {};
        let what = c.op;
        if (c.op === "scale") what = `scale ×${c.factor}`;
        else if (c.op === "set") what = `set lr=${JSON.stringify(c.lr)}${c.until_step != null ? " until " + c.until_step : ""}`;
        else if (c.op === "replace") what = `replace: ${(c.schedule || {}).type} (${c.origin})`;
        else if (c.op === "plateau") what = c.plateau ? `plateau: watch ${c.plateau.metric}` : "plateau: off";
        return `${what} from step ${p.from_step} → revision ${p.revision}`;
      }
      case "reduction":
        return `plateau ×[${(p.multipliers || []).join(", ")}] from step ${p.from_step} (metric at step ${p.metric_step})`;
      case "resume":
        return `resumed at step ${p.step} → incarnation ${p.incarnation}`;
      case "applied":
        return `steps ${p.start}..${p.stop} applied offline (plan as of #${p.as_of})`;
      default:
        return JSON.stringify(p).slice(0, 200);
    }
  }

  function eventsTable(events) {
    const rows = events
      .slice()
      .reverse()
      .map((e) =>
        h(
          "tr",
          { dataset: { seq: e.seq, kind: e.kind } },
          h("td", { class: "num" }, String(e.seq)),
          h("td", { title: e.at }, fmtTime(e.at)),
          h("td", {}, h("span", { class: "kind kind-" + e.kind }, e.kind)),
          h("td", {}, e.actor || h("span", { class: "muted" }, "–")),
          h("td", {}, e.reason || ""),
          h("td", { class: "mono" }, describeEvent(e))
        )
      );
    return h(
      "table",
      { id: "events", class: "events" },
      h("thead", {}, h("tr", {}, ["#", "Time", "Kind", "Actor", "Reason", "What"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)
    );
  }

  const runState = { log: true, start: null, stop: null, metric: null, preview: null, metricLog: false, showMetrics: false };

  async function runView(my, runId) {
    Object.assign(runState, { start: null, stop: null, metric: null, preview: null, showMetrics: false });
    const root = h("div", { id: "run-view" });
    main().replaceChildren(root);
    let last = null;
    let stamp = null;
    const container = { charts: h("div", { class: "card", id: "charts" }), events: h("div", { id: "events-box" }) };
    const header = h("div", {});
    const rangeTest = h("div", { id: "range-test" });
    const form = changeForm(runId, () => reload(true));
    root.append(header, container.charts, rangeTest, h("h2", {}, "Change the schedule"), form.el, h("h2", {}, "Events"), container.events);

    const redraw = () => {
      if (!last) return;
      drawRunCharts(container.charts, last, reload);
      form.setRun(last);
    };
    async function reload(force) {
      const q = new URLSearchParams();
      q.set("width", String(chartWidth(container.charts) - 78));
      if (runState.start !== null) q.set("start", String(runState.start));
      if (runState.stop !== null) q.set("stop", String(runState.stop));
      try {
        const plot = await api("GET", `ui/api/runs/${enc(runId)}/plot?` + q.toString());
        if (my !== viewToken) return;
        last = plot;
        stamp = plot.run.updated_at + "/" + plot.revision + "/" + plot.horizon;
        header.replaceChildren(runHeader(plot));
        redraw();
        await drawEvents(container.events, runId, plot);
        drawRangeTest(rangeTest, runId, plot);
      } catch (e) {
        if (my !== viewToken) return;
        if (e.status === 404 || e.status === 401 || e.status === 403) {
          // nothing to show: no such run, or no access (the token box at the top re-renders the page)
          stopPolling();
          root.replaceChildren(h("a", { href: "#/" }, "← runs"), h("h1", {}, runId), errorBox(e));
          return;
        }
        header.replaceChildren(last ? runHeader(last) : h("h1", {}, runId), errorBox(e));
      }
    }
    runState.reload = reload;
    runState.redraw = redraw;
    await reload(true);
    poll = setInterval(async () => {
      try {
        const run = await api("GET", `v1/runs/${enc(runId)}`);
        if (my !== viewToken) return;
        const now = run.updated_at + "/" + run.revision + "/" + run.horizon;
        if (now !== stamp) await reload(false);
      } catch (e) {
        /* the next tick retries */
      }
    }, POLL_MS);
  }

  function runHeader(plot) {
    const r = plot.run;
    const del = writeGuard(
      h(
        "button",
        {
          class: "danger",
          id: "delete-run",
          onclick: async () => {
            if (!confirm(`Delete run ${r.run_id} and its whole history?`)) return;
            try {
              await api("DELETE", `v1/runs/${enc(r.run_id)}`);
              location.hash = "#/";
            } catch (e) {
              alert(e.message);
            }
          },
        },
        "Delete run"
      )
    );
    const fact = (k, v) => h("div", {}, h("span", {}, k), v);
    return h(
      "div",
      {},
      h("div", { class: "row" }, h("a", { href: "#/" }, "← runs"), h("span", { class: "spacer" }), del),
      h("h1", {}, r.run_id, " ", labelChips(r.labels, (l) => (location.hash = "#/?label=" + enc(l)))),
      h(
        "div",
        { class: "facts" },
        fact("schedule", r.schedule_type),
        fact("horizon", r.horizon < 0 ? "none served" : String(r.horizon)),
        fact("total steps", r.total_steps === null ? "unbounded" : String(r.total_steps)),
        fact("revision", String(r.revision)),
        fact("incarnation", String(r.incarnation)),
        fact("current LR", r.group_names.map((g, i) => `${g} ${fmtNum(r.current_lr[i])}`).join(" · ")),
        r.last_metric ? fact("last metric", `${r.last_metric.name} = ${fmtNum(r.last_metric.value)} @${r.last_metric.step}`) : null,
        r.plateau
          ? fact("plateau", `${r.plateau.metric}: best ${fmtNum(r.plateau.best)}, bad ${r.plateau.num_bad}, reductions ${r.plateau.num_reductions}`)
          : null,
        fact("updated", fmtTime(r.updated_at))
      )
    );
  }

  function splitAt(xs, ys, horizon) {
    // past: x <= horizon; future: x > horizon, starting from the last past point so the line joins.
    let i = 0;
    while (i < xs.length && xs[i] <= horizon) i++;
    const past = { x: xs.slice(0, i), y: ys.slice(0, i) };
    const j = Math.max(0, i - 1);
    const future = { x: xs.slice(j), y: ys.slice(j) };
    return [past, future];
  }

  function drawRunCharts(box, plot, reload) {
    const W = chartWidth(box) - 28;
    const curve = plot.curve;
    const series = [];
    const leg = [];
    curve.groups.forEach((g, i) => {
      const color = COLORS[i % COLORS.length];
      const [past, future] = splitAt(curve.x, g.lr, plot.horizon);
      if (past.x.length) series.push({ ...past, color, cls: "past", name: g.name });
      if (future.x.length > 1 || plot.horizon < plot.start) series.push({ ...future, color, cls: "future", name: g.name });
      leg.push({ color, label: g.name });
    });
    const pv = runState.preview;
    if (pv) {
      pv.group_names.forEach((name, i) => {
        series.push({ x: pv.x, y: pv.proposed[i], color: "#f59e0b", cls: "proposed", name: name + " (proposed)" });
      });
    }
    const markers = plot.markers.map((mk) => ({ step: mk.step, kind: mk.kind, tip: markerTip(mk) }));
    const hover = (v) => {
      const step = Math.round(v);
      const lines = ["step " + step + (step <= plot.horizon ? " (served)" : " (planned)")];
      curve.groups.forEach((g) => lines.push(`${g.name}: ${fmtNum(valueAt(curve.x, g.lr, step))}`));
      if (pv) pv.group_names.forEach((n, i) => lines.push(`${n} proposed: ${fmtNum(valueAt(pv.x, pv.proposed[i], step))}`));
      return lines.join("\n");
    };
    const onSelect = (lo, hi) => {
      runState.start = Math.max(0, Math.floor(lo));
      runState.stop = Math.max(runState.start + 2, Math.ceil(hi));
      reload(false);
    };
    const xr = { lo: plot.start, hi: plot.stop - 1, label: "step" };
    const lrChart = lineChart({
      width: W,
      height: 300,
      x: xr,
      y: { log: runState.log, label: "learning rate" },
      series,
      horizon: plot.horizon,
      markers,
      hover,
      onSelect,
      cls: "lr-chart",
    });
    const logBox = h("input", { type: "checkbox", id: "log-y", checked: runState.log });
    logBox.addEventListener("change", () => {
      runState.log = logBox.checked;
      runState.redraw();
    });
    const startIn = h("input", { id: "range-start", size: 9, value: String(plot.start), title: "first step drawn" });
    const stopIn = h("input", { id: "range-stop", size: 9, value: String(plot.stop), title: "step after the last drawn" });
    const setRange = () => {
      runState.start = Number(startIn.value) || 0;
      runState.stop = Number(stopIn.value) || null;
      reload(false);
    };
    const controls = h(
      "div",
      { class: "row" },
      h("label", {}, logBox, " log y"),
      h("span", { class: "muted" }, "steps"),
      startIn,
      "–",
      stopIn,
      h("button", { onclick: setRange }, "Show"),
      h(
        "button",
        {
          onclick: () => {
            runState.start = runState.stop = null;
            reload(false);
          },
        },
        "Full range"
      ),
      h("span", { class: "muted" }, "drag on the chart to zoom"),
      h("span", { class: "spacer" }),
      h("span", { class: "muted", title: "points evaluated on the server / points drawn" }, `${curve.evaluated.toLocaleString()} steps evaluated (stride ${curve.stride}), ${curve.x.length.toLocaleString()} points drawn`)
    );
    leg.push({ color: "#64748b", label: "served (solid) / planned (dashed)" });
    if (pv) leg.push({ color: "#f59e0b", label: "preview of the change", style: "dotted" });
    for (const [kind, color] of Object.entries(MARKER_COLORS)) leg.push({ color, label: kind + " marker" });
    const parts = [controls, legend(leg), lrChart];

    // metrics under the LR curve, on the same x range
    const names = Object.keys(plot.metrics).sort();
    if (names.length) {
      const chosen = runState.metric && plot.metrics[runState.metric] ? runState.metric : plot.plateau_metric && plot.metrics[plot.plateau_metric] ? plot.plateau_metric : names[0];
      const sel = h("select", { id: "metric-select" }, names.map((n) => h("option", { value: n, selected: n === chosen }, n + (n === plot.plateau_metric ? " (plateau)" : ""))));
      sel.addEventListener("change", () => {
        runState.metric = sel.value;
        runState.redraw();
      });
      const mlog = h("input", { type: "checkbox", checked: runState.metricLog });
      mlog.addEventListener("change", () => {
        runState.metricLog = mlog.checked;
        runState.redraw();
      });
      const ms = plot.metrics[chosen];
      const reds = plot.markers.filter((mk) => mk.kind === "reduction").map((mk) => ({ step: mk.step, kind: mk.kind, tip: markerTip(mk) }));
      parts.push(
        h("div", { class: "row", style: "margin-top:10px" }, h("span", { class: "muted" }, "metric"), sel, h("label", {}, mlog, " log y"), h("span", { class: "muted" }, `${ms.count} value(s)`)),
        lineChart({
          width: W,
          height: 170,
          x: xr,
          y: { log: runState.metricLog, label: chosen },
          series: [{ x: ms.x, y: ms.y, color: "#0f766e", name: chosen }],
          horizon: plot.horizon,
          markers: reds,
          cls: "metric-chart",
          hover: (v) => `step ${Math.round(v)}\n${chosen}: ${fmtNum(valueAt(ms.x, ms.y, v))}`,
        })
      );
    } else {
      parts.push(h("p", { class: "muted", id: "no-metrics" }, "No metrics posted yet" + (plot.plateau_metric ? ` (plateau watches ${plot.plateau_metric}).` : ".")));
    }

    // momentum when the schedule cycles it
    const mom = curve.groups.filter((g) => g.momentum && g.momentum.some((v) => v !== null));
    if (mom.length) {
      parts.push(
        h("div", { class: "muted", style: "margin-top:10px" }, "momentum (cycled)"),
        lineChart({
          width: W,
          height: 150,
          x: xr,
          y: { log: false, label: "momentum" },
          series: curve.groups.map((g, i) => ({ x: curve.x, y: g.momentum || [], color: COLORS[i % COLORS.length], name: g.name })),
          horizon: plot.horizon,
          cls: "momentum-chart",
        })
      );
    }
    box.replaceChildren(...parts);
  }

  async function drawEvents(box, runId, plot) {
    const showMetrics = h("input", { type: "checkbox", id: "show-metrics", checked: runState.showMetrics });
    showMetrics.addEventListener("change", async () => {
      runState.showMetrics = showMetrics.checked;
      await drawEvents(box, runId, plot);
    });
    let events = plot.events;
    let note = `${plot.events_total.other} event(s) besides ${plot.events_total.metric} metric value(s)`;
    if (runState.showMetrics) {
      // every event, metrics included, from the API (the latest 2000 at most)
      try {
        const all = [];
        let after = 0;
        for (let i = 0; i < 20; i++) {
          const page = await api("GET", `v1/runs/${enc(runId)}/events?limit=1000&after=${after}`);
          all.push(...page.events);
          if (page.next_after === null) break;
          after = page.next_after;
        }
        events = all.slice(-2000);
        note = `${all.length} event(s)` + (all.length > 2000 ? " (latest 2000 shown)" : "");
      } catch (e) {
        note = e.message;
      }
    }
    box.replaceChildren(h("div", { class: "row" }, h("label", {}, showMetrics, " include metrics"), h("span", { class: "muted" }, note)), eventsTable(events));
  }

  // ---- range test: loss vs LR, the suggestions of GET /v1/runs/{id}/suggestion, the follow-up run ----

  const RULE_COLORS = { steepest: "#dc2626", valley: "#059669", minimum_div_10: "#7c3aed", minimum: "#d97706" };

  function drawRangeTest(box, runId, plot) {
    const rt = plot.range_test;
    if (!rt) {
      box.replaceChildren();
      return;
    }
    if (!box.dataset.done) {
      // built once: the chart and the picks are redrawn as the test goes on, the follow-up form keeps its inputs
      box.dataset.done = "1";
      box.replaceChildren(
        h("h2", {}, "Range test: loss vs LR"),
        h("div", { class: "card" }, h("div", { id: "range-status", class: "muted" }), h("div", { id: "range-chart-box" }), h("div", { id: "suggestions" }), followupForm(runId))
      );
    }
    const chartBox = box.querySelector("#range-chart-box");
    const sugBox = box.querySelector("#suggestions");
    const statusEl = box.querySelector("#range-status");
    const metric = rt.metric || "loss";
    const W = chartWidth(box) - 28;
    const draw = (vlines, data) => {
      const lr = data.lr;
      const series = [{ x: lr, y: data.loss, color: "#94a3b8", name: metric }];
      if (data.smoothed) series.push({ x: lr, y: data.smoothed, color: "#0f766e", name: "smoothed" });
      const pos = lr.filter((v) => v > 0);
      if (!pos.length) {
        chartBox.replaceChildren(h("p", { class: "muted" }, `No ${metric} posted yet: the range test plots it against the LR.`));
        return;
      }
      chartBox.replaceChildren(
        legend([{ color: "#94a3b8", label: metric }, ...(data.smoothed ? [{ color: "#0f766e", label: "smoothed" }] : [])]),
        lineChart({
          width: W,
          height: 260,
          x: { lo: Math.min(...pos), hi: Math.max(...pos), log: true, label: "learning rate (log)" },
          y: { log: false, label: metric },
          series,
          vlines,
          cls: "range-chart",
          hover: (v) => `lr ${fmtNum(v)}\n${metric}: ${fmtNum(valueAt(lr, data.loss, v))}` + (data.smoothed ? `\nsmoothed: ${fmtNum(valueAt(lr, data.smoothed, v))}` : ""),
        })
      );
    };
    draw([], rt);
    api("GET", `v1/runs/${enc(runId)}/suggestion`).then(
      (sug) => {
        const picks = sug.rules || [];
        const vlines = picks.map((p, i) => ({
          x: p.lr[0],
          color: RULE_COLORS[p.rule] || COLORS[i % COLORS.length],
          label: p.rule,
          row: i,
          tip: `${p.rule}: ${fmtNum(p.lr[0])} (step ${p.step}, smoothed ${metric} ${fmtNum(p.loss)})\n${p.description}`,
        }));
        const b = sug.clr_bounds;
        if (b) {
          const tip = `CLR bounds (${b.upper_rule}, upper / ${b.lower_div}): ${fmtNum(b.lower[0])} .. ${fmtNum(b.upper[0])}`;
          vlines.push({ x: b.lower[0], color: "#64748b", label: "CLR lower", row: picks.length, tip });
        }
        draw(vlines, sug.plot && sug.plot.lr ? sug.plot : rt);
        statusEl.textContent =
          sug.stopped_at !== null && sug.stopped_at !== undefined
            ? `The ${metric} diverged at step ${sug.stopped_at}: the test is over.`
            : sug.done
              ? "The test reached its last step."
              : "The test is running; the suggestions follow the smoothed " + metric + ".";
        const groups = plot.run.group_names;
        const perGroup = (lrs) => lrs.map((v, g) => (groups.length > 1 ? groups[g] + " " : "") + fmtNum(v)).join(", ");
        sugBox.replaceChildren(
          picks.length
            ? h("ul", { id: "picks" }, picks.map((p) => h("li", { dataset: { rule: p.rule } }, h("b", {}, p.rule), ": ", perGroup(p.lr), h("span", { class: "muted" }, " — " + p.description))))
            : h("p", { class: "muted" }, "No rule has a pick yet (too few steps)."),
          b ? h("p", { id: "clr-bounds" }, `CLR bounds (${b.upper_rule}, lower = upper / ${b.lower_div}): ${perGroup(b.lower)} .. ${perGroup(b.upper)}`) : null
        );
      },
      (e) => {
        sugBox.replaceChildren(
          h(
            "div",
            { class: "placeholder", id: "suggestion-placeholder" },
            e.status === 404
              ? "Suggested LRs appear here once this server offers GET /v1/runs/{id}/suggestion."
              : e.status === 409
                ? "No suggestion yet: " + e.message
                : "Suggestions unavailable: " + e.message
          )
        );
      }
    );
  }

  function followupForm(runId) {
    const f = {
      run_id: h("input", { id: "followup-id", value: runId + "-train", size: 24 }),
      policy: h("select", { id: "followup-policy" }, ["triangular", "triangular2", "exp_range", "one_cycle"].map((p) => h("option", { value: p }, p))),
      upper_rule: h("select", { id: "followup-rule" }, ["valley", "steepest", "minimum_div_10", "minimum"].map((p) => h("option", { value: p }, p))),
      lower_div: h("input", { id: "followup-lower_div", value: "6", size: 4, title: "lower bound = upper / this" }),
      step_size_up: h("input", { id: "followup-step_size_up", size: 8, placeholder: "CyclicLR", title: "CyclicLR: steps of a half cycle" }),
      total_steps: h("input", { id: "followup-total_steps", size: 8, placeholder: "one_cycle", title: "OneCycleLR: steps of the cycle" }),
    };
    const out = h("div", { class: "form-status", id: "followup-status" });
    const num = (t) => (t.trim() !== "" && Number.isFinite(Number(t)) ? Number(t) : t.trim());
    const button = h(
      "button",
      {
        type: "button",
        class: "primary",
        id: "followup",
        onclick: async () => {
          const body = { run_id: f.run_id.value.trim(), policy: f.policy.value, upper_rule: f.upper_rule.value, lower_div: num(f.lower_div.value) };
          for (const k of ["step_size_up", "total_steps"]) if (f[k].value.trim()) body[k] = num(f[k].value);
          for (const el of Object.values(f)) el.classList.remove("invalid");
          try {
            const run = await api("POST", `v1/runs/${enc(runId)}/followup`, body);
            out.className = "form-status ok";
            out.replaceChildren("Created ", h("a", { href: "#/runs/" + enc(run.run_id) }, run.run_id), `: ${run.schedule_type}`);
          } catch (e) {
            const errs = (e.problem && e.problem.errors) || [];
            for (const er of errs) if (f[er.loc && er.loc[0]]) f[er.loc[0]].classList.add("invalid");
            out.className = "form-status error";
            out.textContent = e.message + errs.filter((er) => !e.message.includes(er.msg)).map((er) => `\n${er.path}: ${er.msg}`).join("");
          }
        },
      },
      "Create follow-up run"
    );
    if (!auth.scopes.includes("train")) {
      button.disabled = true;
      button.title = "needs a token with the train scope";
    }
    return h(
      "div",
      { id: "followup-form" },
      h("div", { class: "row", style: "margin-top:8px" }, "Follow-up run", f.run_id, f.policy, "upper from", f.upper_rule, "÷", f.lower_div, "half cycle", f.step_size_up, "or cycle", f.total_steps, button),
      out
    );
  }

  // ---- the change form ----

  const OPS = {
    scale: { help: "multiply every group's LR from the first unserved step (or from step)", fields: ["factor"] },
    set: { help: "hold a fixed LR (one number, or one per group separated by commas) until a step", fields: ["lr", "until_step"] },
    replace: { help: "swap the schedule (YAML or JSON); absolute: evaluated at the global step, restart: from 0 at the change", fields: ["schedule", "origin"] },
    plateau: { help: "replace the plateau rules (YAML or JSON), or remove them", fields: ["plateau", "plateau_off"] },
  };
  const COMMON = ["from_step", "reason"];

  function changeForm(runId, onApplied) {
    let run = null;
    let previewed = null; // JSON of the body previewed
    const inputs = {
      op: h("select", { name: "op", id: "change-op" }, Object.keys(OPS).map((op) => h("option", { value: op }, op))),
      factor: h("input", { name: "factor", id: "change-factor", value: "0.5", inputmode: "decimal" }),
      lr: h("input", { name: "lr", id: "change-lr", placeholder: "0.01  or  0.01, 0.1" }),
      until_step: h("input", { name: "until_step", id: "change-until_step", placeholder: "optional" }),
      schedule: h("textarea", { name: "schedule", id: "change-schedule", rows: 4, placeholder: "{type: CosineAnnealingLR, T_max: 10000}" }),
      origin: h("select", { name: "origin", id: "change-origin" }, h("option", { value: "absolute" }, "absolute"), h("option", { value: "restart" }, "restart")),
      plateau: h("textarea", { name: "plateau", id: "change-plateau", rows: 3, placeholder: "{metric: val_loss, mode: min, factor: 0.5, patience: 5}" }),
      plateau_off: h("input", { type: "checkbox", name: "plateau_off", id: "change-plateau_off" }),
      from_step: h("input", { name: "from_step", id: "change-from_step", placeholder: "first unserved step" }),
      reason: h("input", { name: "reason", id: "change-reason", size: 50, placeholder: "why (shown in the history)" }),
    };
    const labels = {
      factor: "factor",
      lr: "lr",
      until_step: "until step",
      schedule: "schedule",
      origin: "origin",
      plateau: "plateau rules",
      plateau_off: "remove plateau",
      from_step: "from step",
      reason: "reason",
    };
    const errs = {};
    const rows = {};
    const fields = h("div", { class: "fields" });
    fields.append(h("label", { for: "change-op" }, "operation"), h("div", {}, inputs.op, h("div", { class: "hint", id: "op-help" })));
    for (const key of [...new Set(Object.values(OPS).flatMap((o) => o.fields)), ...COMMON]) {
      errs[key] = h("div", { class: "field-error", id: "error-" + key, dataset: { field: key } });
      const label = h("label", { for: "change-" + key }, labels[key]);
      const cell = h("div", {}, inputs[key], errs[key]);
      rows[key] = [label, cell];
      fields.append(label, cell);
    }
    const status = h("div", { class: "form-status", id: "change-status" });
    const previewBtn = h("button", { type: "button", id: "preview-change" }, "Preview");
    const applyBtn = h("button", { type: "button", class: "primary", id: "apply-change", disabled: true }, "Apply");
    const cancelBtn = h("button", { type: "button", id: "cancel-preview" }, "Clear preview");
    const el = h("form", { class: "change card", id: "change-form", onsubmit: (ev) => ev.preventDefault() }, fields, h("div", { class: "row", style: "margin-top:10px" }, previewBtn, applyBtn, cancelBtn), status);

    const showOp = () => {
      const op = inputs.op.value;
      el.querySelector("#op-help").textContent = OPS[op].help;
      for (const [key, [label, cell]] of Object.entries(rows)) {
        const on = COMMON.includes(key) || OPS[op].fields.includes(key);
        label.hidden = cell.hidden = !on;
      }
    };
    const clearErrors = () => {
      for (const [k, e] of Object.entries(errs)) {
        e.textContent = "";
        if (inputs[k]) inputs[k].classList.remove("invalid");
      }
      status.textContent = "";
      status.className = "form-status";
    };
    const invalidate = () => {
      previewed = null;
      applyBtn.disabled = true;
      if (runState.preview) {
        runState.preview = null;
        runState.redraw && runState.redraw();
      }
    };
    inputs.op.addEventListener("change", () => {
      showOp();
      clearErrors();
      invalidate();
    });
    for (const [k, inp] of Object.entries(inputs)) if (k !== "op") inp.addEventListener("input", invalidate);
    inputs.plateau_off.addEventListener("change", () => {
      inputs.plateau.disabled = inputs.plateau_off.checked;
      invalidate();
    });

    const num = (text) => {
      const t = text.trim();
      return t !== "" && Number.isFinite(Number(t)) ? Number(t) : t;
    };
    const structured = async (key) => {
      const text = inputs[key].value.trim();
      if (!text) return undefined;
      try {
        return JSON.parse(text);
      } catch (e) {
        try {
          return (await api("POST", "ui/api/parse", { text })).data;
        } catch (err) {
          throw { field: key, message: err.message };
        }
      }
    };
    async function body() {
      const op = inputs.op.value;
      const b = { op };
      if (inputs.from_step.value.trim()) b.from_step = num(inputs.from_step.value);
      if (inputs.reason.value.trim()) b.reason = inputs.reason.value.trim();
      if (op === "scale") b.factor = num(inputs.factor.value);
      if (op === "set") {
        const parts = inputs.lr.value.split(/[,\s]+/).filter(Boolean).map(num);
        b.lr = parts.length === 1 ? parts[0] : parts;
        if (inputs.until_step.value.trim()) b.until_step = num(inputs.until_step.value);
      }
      if (op === "replace") {
        b.schedule = await structured("schedule");
        b.origin = inputs.origin.value;
      }
      if (op === "plateau") b.plateau = inputs.plateau_off.checked ? null : await structured("plateau");
      return b;
    }
    const fieldOf = (loc) => {
      const key = loc.find((p) => typeof p === "string" && p in errs);
      return key || null;
    };
    const showProblem = (e) => {
      const problem = e.problem || {};
      const loose = [];
      for (const err of problem.errors || []) {
        const key = fieldOf(err.loc || []);
        const line = (err.path && key && err.path !== key ? err.path + ": " : "") + err.msg;
        if (key) {
          errs[key].textContent += (errs[key].textContent ? "\n" : "") + line;
          inputs[key].classList.add("invalid");
        } else loose.push((err.path ? err.path + ": " : "") + err.msg);
      }
      status.className = "form-status error";
      status.textContent = (problem.title ? problem.title + ": " : "") + (problem.detail || e.message) + (loose.length ? "\n" + loose.join("\n") : "");
      if (problem.horizon !== undefined) status.textContent += `\n(the run has served steps up to ${problem.horizon})`;
    };

    previewBtn.addEventListener("click", async () => {
      clearErrors();
      let b;
      try {
        b = await body();
      } catch (e) {
        if (e.field) {
          errs[e.field].textContent = e.message;
          inputs[e.field].classList.add("invalid");
        }
        return;
      }
      status.textContent = "previewing…";
      try {
        const q = new URLSearchParams({ width: String(chartWidth(document.getElementById("charts")) - 78) });
        if (runState.stop !== null) q.set("stop", String(runState.stop));
        const pv = await api("POST", `ui/api/runs/${enc(runId)}/preview?` + q.toString(), b);
        previewed = { json: JSON.stringify(b), body: b, revision: pv.revision };
        runState.preview = pv;
        runState.redraw();
        applyBtn.disabled = !canWrite();
        status.className = "form-status ok";
        status.textContent = `Preview drawn over the curve (dotted): takes effect from step ${pv.from_step}. Apply records it as revision ${pv.revision + 1}.`;
      } catch (e) {
        showProblem(e);
      }
    });
    applyBtn.addEventListener("click", async () => {
      if (!previewed) return;
      clearErrors();
      const b = { ...previewed.body, expected_revision: previewed.revision };
      try {
        const res = await api("POST", `v1/runs/${enc(runId)}/changes`, b);
        status.className = "form-status ok";
        status.textContent = `Applied: revision ${res.revision}, from step ${res.from_step} (event #${res.event_seq}).`;
        previewed = null;
        applyBtn.disabled = true;
        runState.preview = null;
        await onApplied();
        status.className = "form-status ok";
        status.textContent = `Applied: revision ${res.revision}, from step ${res.from_step} (event #${res.event_seq}).`;
      } catch (e) {
        showProblem(e);
        if (e.status === 409 || e.status === 412) status.textContent += "\nPreview again to see the run as it is now.";
      }
    });
    cancelBtn.addEventListener("click", () => {
      clearErrors();
      invalidate();
    });
    showOp();
    if (!canWrite()) {
      previewBtn.disabled = true;
      previewBtn.title = "needs a token with the admin scope";
      status.className = "form-status muted";
      status.textContent = "Changes need a token with the admin scope.";
    }
    return {
      el,
      setRun(plot) {
        run = plot;
        inputs.from_step.placeholder = "first unserved step: " + (run.horizon + 1);
      },
    };
  }

  // ---- spec playground ----

  const EXAMPLE = `# a run spec, YAML or JSON
param_groups:
  - {name: backbone, lr: 0.01}
  - {name: head, lr: 0.1}
schedule: {type: OneCycleLR, max_lr: [0.1, 1.0], total_steps: 10000}
`;

  function playgroundView(my) {
    const text = h("textarea", { id: "spec-text", rows: 16, spellcheck: "false" });
    text.value = localStorage.getItem("lrserve.playground") || EXAMPLE;
    const steps = h("input", { id: "spec-steps", size: 10, placeholder: "auto" });
    const logBox = h("input", { type: "checkbox", id: "spec-log", checked: true });
    const out = h("div", { id: "spec-result" });
    const chartBox = h("div", { class: "card", id: "spec-chart" });
    let timer = null;
    const draw = async () => {
      localStorage.setItem("lrserve.playground", text.value);
      const body = { text: text.value, width: chartWidth(chartBox) - 106 };
      if (steps.value.trim()) body.stop = Number(steps.value.trim()) || steps.value.trim();
      try {
        const res = await api("POST", "ui/api/playground", body);
        if (my !== viewToken) return;
        out.replaceChildren(h("div", { class: "ok", id: "spec-ok" }, `Valid: ${res.spec.schedule.type}, ${res.spec.param_groups.length} group(s), steps ${res.start}..${res.stop - 1}`));
        const c = res.curve;
        const W = chartWidth(chartBox) - 28;
        const parts = [
          legend(c.groups.map((g, i) => ({ color: COLORS[i % COLORS.length], label: g.name }))),
          lineChart({
            width: W,
            height: 300,
            x: { lo: res.start, hi: res.stop - 1, label: "step" },
            y: { log: logBox.checked, label: "learning rate" },
            series: c.groups.map((g, i) => ({ x: c.x, y: g.lr, color: COLORS[i % COLORS.length], name: g.name })),
            markers: res.markers.map((mk) => ({ step: mk.step, kind: mk.kind, tip: markerTip(mk) })),
            hover: (v) => ["step " + Math.round(v), ...c.groups.map((g) => `${g.name}: ${fmtNum(valueAt(c.x, g.lr, v))}`)].join("\n"),
            cls: "lr-chart",
          }),
        ];
        if (c.groups.some((g) => g.momentum && g.momentum.some((v) => v !== null))) {
          parts.push(
            lineChart({
              width: W,
              height: 140,
              x: { lo: res.start, hi: res.stop - 1, label: "step" },
              y: { log: false, label: "momentum" },
              series: c.groups.map((g, i) => ({ x: c.x, y: g.momentum || [], color: COLORS[i % COLORS.length], name: g.name })),
              cls: "momentum-chart",
            })
          );
        }
        chartBox.replaceChildren(...parts);
        chartBox.classList.remove("stale");
      } catch (e) {
        if (my !== viewToken) return;
        const errors = (e.problem && e.problem.errors) || [];
        chartBox.classList.add("stale"); // the curve drawn last belongs to an earlier text
        out.replaceChildren(
          h("div", { class: "error", id: "spec-error" }, errors.length ? (e.problem.title || "Invalid") + ":" : e.message),
          errors.length ? h("ul", { class: "errors-list" }, errors.map((er) => h("li", {}, h("code", {}, er.path && er.path !== "text" ? er.path : "(spec)"), ": " + er.msg))) : null
        );
      }
    };
    text.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(draw, 400);
    });
    logBox.addEventListener("change", draw);
    steps.addEventListener("change", draw);
    main().replaceChildren(
      h("h1", {}, "Spec playground"),
      h("p", { class: "muted" }, "Paste a run spec (YAML or JSON, in torch's, Keras' or Caffe's dialect): see what is wrong with it, or its curve. Nothing is stored."),
      h(
        "div",
        { class: "two" },
        h("div", { class: "card" }, text, h("div", { class: "row", style: "margin-top:8px" }, h("button", { class: "primary", id: "spec-draw", onclick: draw }, "Validate & draw"), "steps", steps, h("label", {}, logBox, " log y")), out),
        chartBox
      )
    );
    draw();
  }

  // ---- routing ----------------------------------------------------------------------------------------------

  function route() {
    stopPolling();
    tooltip.hide();
    const my = ++viewToken;
    const hash = location.hash.replace(/^#/, "") || "/";
    const path = hash.split("?")[0];
    document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", (path.startsWith("/playground") ? "playground" : "runs") === a.dataset.nav));
    if (path.startsWith("/runs/")) return runView(my, decodeURIComponent(path.slice(6)));
    if (path.startsWith("/playground")) return playgroundView(my);
    return runsView(my);
  }

  async function start() {
    setupToken();
    await refreshWhoami();
    window.addEventListener("hashchange", route);
    route();
  }

  start();
})();
