// eventmon dashboard: no dependencies, no network beyond this server.
(function () {
  "use strict";
  var prefix = document.body.getAttribute("data-prefix") || "/eventmon/";
  var token = new URLSearchParams(location.search).get("token");
  var HISTORY = 300;
  var history = [];
  var table = { page: 1, pages: 1, sort: "count", order: "desc", q: "" };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(x, digits) {
    if (x === null || x === undefined || isNaN(x)) return "–";
    var d = digits === undefined ? 1 : digits;
    return Number(x).toLocaleString(undefined, { minimumFractionDigits: d, maximumFractionDigits: d });
  }
  function api(path) {
    var headers = token ? { Authorization: "Bearer " + token } : {};
    return fetch(prefix + path, { headers: headers, cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error(path + ": HTTP " + r.status);
      return r.json();
    });
  }
  function duration(s) {
    s = Math.floor(s || 0);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
  }

  // ---------------------------------------------------------------- charts
  function chart(svg, series, opts) {
    opts = opts || {};
    var W = 400, H = svg.id === "chart-forecast" ? 90 : 120, pad = 14;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var ns = "http://www.w3.org/2000/svg";
    var max = opts.max || 0, n = 0;
    series.forEach(function (s) {
      n = Math.max(n, s.values.length);
      s.values.forEach(function (v) { if (v > max) max = v; });
    });
    if (!(max > 0)) max = 1;
    max = niceCeil(max);
    for (var g = 0; g <= 2; g++) {
      var y = pad + (H - 2 * pad) * g / 2;
      var line = document.createElementNS(ns, "line");
      line.setAttribute("x1", 0); line.setAttribute("x2", W);
      line.setAttribute("y1", y); line.setAttribute("y2", y);
      line.setAttribute("class", "grid");
      svg.appendChild(line);
      var label = document.createElementNS(ns, "text");
      label.setAttribute("x", 2); label.setAttribute("y", y - 2);
      label.textContent = fmt(max * (1 - g / 2), max < 10 ? 1 : 0);
      svg.appendChild(label);
    }
    if (n < 2) return;
    series.forEach(function (s) {
      var pts = s.values.map(function (v, i) {
        var x = (W * i) / (n - 1);
        var yv = H - pad - ((H - 2 * pad) * (v || 0)) / max;
        return x.toFixed(1) + "," + yv.toFixed(1);
      });
      var pl = document.createElementNS(ns, "polyline");
      pl.setAttribute("points", pts.join(" "));
      pl.setAttribute("class", s.cls);
      svg.appendChild(pl);
    });
  }
  function niceCeil(x) {
    var p = Math.pow(10, Math.floor(Math.log10(x)));
    var m = x / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  function pick(key, scale) {
    return history.map(function (h) { return (h[key] || 0) * (scale || 1); });
  }
  function drawCharts() {
    chart($("chart-rps"), [{ cls: "s-rps", values: pick("rps") }]);
    chart($("chart-latency"), [
      { cls: "s-p50", values: pick("p50") },
      { cls: "s-p95", values: pick("p95") },
      { cls: "s-p99", values: pick("p99") }
    ]);
    chart($("chart-errors"), [{ cls: "s-err", values: pick("errorRate", 100) }]);
    chart($("chart-resources"), [
      { cls: "s-cpu", values: pick("cpu") },
      { cls: "s-mem", values: pick("memory") },
      { cls: "s-act", values: pick("active") }
    ], { max: 10 });
  }

  // ----------------------------------------------------------------- tiles
  function showSnapshot(s) {
    $("rps").textContent = fmt(s.requestsPerSecond);
    $("avg").textContent = fmt(s.averageResponseTime);
    $("p50").textContent = fmt(s.p50ResponseTime);
    $("p95").textContent = fmt(s.p95ResponseTime);
    $("p99").textContent = fmt(s.p99ResponseTime);
    $("error-rate").textContent = fmt((s.errorRate || 0) * 100, 2) + " %";
    $("active").textContent = fmt(s.activeConnections, 0);
    $("cpu").textContent = fmt(s.cpuUsage);
    $("memory").textContent = fmt(s.memoryUsage);
    $("total-requests").textContent = fmt(s.totalRequests, 0);
    $("endpoint-count").textContent = fmt(s.endpointCount, 0);
    $("uptime").textContent = duration(s.uptimeSeconds);
    showBuild(s);
  }
  function showBuild(s) {
    var b = $("build");
    if (!s.version) return;
    // "python" means the C accelerator is not in use: same numbers, more cost per request.
    b.textContent = "v" + s.version + " · " + (s.accelerator === "c" ? "C accelerator" : "pure Python");
    // Worker aggregation: every figure is the whole server's, merged over its workers.
    if (s.aggregated) b.textContent += " · " + s.workers + (s.workers === 1 ? " worker" : " workers") + " merged";
    b.dataset.accelerator = s.accelerator;
    b.title = s.accelerator === "c" ? "request path compiled (C accelerator)"
      : "pure-Python request path: " + (s.acceleratorReason || "C accelerator not in use");
  }
  function addHistory(s) {
    var last = history[history.length - 1];
    if (last && s.timestamp - last.t < 0.5) return;
    history.push({
      t: s.timestamp, rps: s.requestsPerSecond, avg: s.averageResponseTime,
      p50: s.p50ResponseTime, p95: s.p95ResponseTime, p99: s.p99ResponseTime,
      errorRate: s.errorRate, active: s.activeConnections, cpu: s.cpuUsage, memory: s.memoryUsage
    });
    if (history.length > HISTORY) history.splice(0, history.length - HISTORY);
  }

  // ---------------------------------------------------------------- panels
  function when(t) {
    if (t === undefined || t === null || t === "") return "";
    var d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
    return isNaN(d.getTime()) ? String(t) : d.toLocaleTimeString();
  }
  function showAlerts(doc) {
    var ul = $("alerts");
    ul.textContent = "";
    if (!doc || !doc.available) { ul.appendChild(el("li", "empty", "alerting not configured")); $("alert-count").textContent = "–"; return; }
    var list = doc.data;
    if (list && !Array.isArray(list)) list = list.alerts || [];
    list = list || [];
    var firing = 0;
    list.forEach(function (a) {
      var state = String(a.state || a.status || "unknown").toLowerCase();
      if (state === "firing") firing++;
      var li = el("li");
      li.setAttribute("data-state", state);
      li.setAttribute("data-name", a.name || a.alertname || a.rule || "");
      li.appendChild(el("span", "state " + state, state));
      li.appendChild(el("b", null, a.name || a.alertname || a.rule || "alert"));
      var sev = a.severity || (a.labels && a.labels.severity);
      if (sev) li.appendChild(el("span", "empty", " · " + sev));
      var value = a.value !== undefined ? a.value : null;
      if (value !== null) li.appendChild(el("span", "empty", " · value " + (typeof value === "number" ? fmt(value, 2) : value)));
      var summary = a.summary || a.message || (a.annotations && (a.annotations.summary || a.annotations.description));
      if (summary) li.appendChild(el("div", "empty", summary));
      var since = a.fired_at || a.active_since || a.activeAt || a.active_at || a.since || a.started_at || a.firedAt || a.fired_at;
      if (since) li.appendChild(el("div", "empty", "since " + when(since)));
      ul.appendChild(li);
    });
    if (!list.length) ul.appendChild(el("li", "empty", "no alerts"));
    var badge = $("alert-count");
    badge.textContent = firing ? firing + " firing" : String(list.length);
    badge.className = "badge" + (firing ? " off" : "");
  }
  function showScaling(doc) {
    var ul = $("scaling"), now = $("scaling-now");
    ul.textContent = ""; now.textContent = "";
    if (!doc || !doc.available) { ul.appendChild(el("li", "empty", "scaling not configured")); return; }
    var data = doc.data || {};
    var events = Array.isArray(data) ? data : (data.events || data.history || []);
    if (!Array.isArray(data)) {
      var parts = [];
      ["instances", "current", "desired", "min", "max", "floor", "backend", "policy"].forEach(function (k) {
        if (data[k] !== undefined && data[k] !== null && typeof data[k] !== "object") parts.push(k + " " + data[k]);
      });
      now.textContent = parts.join(" · ");
      now.setAttribute("data-instances", data.instances !== undefined ? data.instances : (data.current !== undefined ? data.current : ""));
    }
    events.slice(-20).reverse().forEach(function (e) {
      var li = el("li");
      li.setAttribute("class", "scale-event");
      var from = e.from !== undefined ? e.from : (e.previous !== undefined ? e.previous : e.old);
      var to = e.to !== undefined ? e.to : (e.desired !== undefined ? e.desired : e["new"]);
      var t = e.time || e.timestamp || e.at || e.started_at;
      li.appendChild(el("b", null, (from !== undefined ? from + " → " : "") + (to !== undefined ? to : "?") + " instances"));
      if (t) li.appendChild(el("span", "empty", " · " + when(t)));
      var why = e.reason || e.message || e.direction;
      if (why) li.appendChild(el("div", "empty", why));
      ul.appendChild(li);
    });
    if (!events.length) ul.appendChild(el("li", "empty", "no scaling events yet"));
  }
  function showForecast(doc) {
    var box = $("forecast");
    box.textContent = "";
    if (!doc || !doc.available) { box.appendChild(el("span", "empty", "forecast not configured")); chart($("chart-forecast"), []); return; }
    var data = doc.data || {};
    var points = Array.isArray(data) ? data : (data.points || data.forecast || []);
    var values = points.map(function (p) {
      if (typeof p === "number") return p;
      return Number(p.value !== undefined ? p.value : (p.requests !== undefined ? p.requests : (p.rps !== undefined ? p.rps : p.instances))) || 0;
    });
    chart($("chart-forecast"), values.length ? [{ cls: "s-fc", values: values }] : []);
    if (!Array.isArray(data)) {
      var parts = [];
      Object.keys(data).forEach(function (k) {
        var v = data[k];
        if (v !== null && typeof v !== "object") parts.push(k + " " + (typeof v === "number" ? fmt(v, 1) : v));
      });
      box.textContent = parts.join(" · ");
    }
    if (!box.textContent) box.textContent = values.length ? values.length + " points" : "no forecast yet";
  }

  // ----------------------------------------------------------------- table
  function loadTable() {
    var q = "api/endpoints?page=" + table.page + "&per_page=50&sort=" + table.sort + "&order=" + table.order +
      (table.q ? "&q=" + encodeURIComponent(table.q) : "");
    return api(q).then(showTable).catch(function () {});
  }
  function showTable(doc) {
    table.page = doc.page; table.pages = doc.pages;
    var body = document.querySelector("#endpoints tbody");
    var frag = document.createDocumentFragment();
    doc.endpoints.forEach(function (r) {
      var tr = el("tr", r.error_rate >= 0.05 ? "bad" : "");
      tr.appendChild(el("td", null, r.endpoint));
      tr.appendChild(el("td", "num", fmt(r.count, 0)));
      tr.appendChild(el("td", "num", fmt(r.errors, 0)));
      tr.appendChild(el("td", "num", fmt(r.error_rate * 100, 2) + " %"));
      ["mean_ms", "p50_ms", "p95_ms", "p99_ms"].forEach(function (k) { tr.appendChild(el("td", "num", fmt(r[k]))); });
      frag.appendChild(tr);
    });
    body.textContent = "";
    body.appendChild(frag);
    $("pageinfo").textContent = "page " + doc.page + " / " + doc.pages + " · " + doc.total + " endpoints";
    document.querySelectorAll("#endpoints th").forEach(function (th) {
      var on = th.getAttribute("data-sort") === table.sort;
      th.className = (th.className.indexOf("num") >= 0 ? "num" : "") + (on ? " sorted" + (table.order === "asc" ? " asc" : "") : "");
    });
  }
  document.querySelectorAll("#endpoints th").forEach(function (th) {
    th.addEventListener("click", function () {
      var key = th.getAttribute("data-sort");
      if (table.sort === key) table.order = table.order === "desc" ? "asc" : "desc";
      else { table.sort = key; table.order = key === "endpoint" ? "asc" : "desc"; }
      table.page = 1; loadTable();
    });
  });
  $("prev").addEventListener("click", function () { if (table.page > 1) { table.page--; loadTable(); } });
  $("next").addEventListener("click", function () { if (table.page < table.pages) { table.page++; loadTable(); } });
  var filterTimer = null;
  $("filter").addEventListener("input", function (e) {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(function () { table.q = e.target.value; table.page = 1; loadTable(); }, 200);
  });

  // ---------------------------------------------------------------- stream
  var redraw = false;
  function onUpdate(doc) {
    showSnapshot(doc.snapshot);
    addHistory(doc.snapshot);
    showAlerts(doc.alerts);
    showScaling(doc.scaling);
    showForecast(doc.forecast);
    redraw = true;
  }
  function connect() {
    var url = prefix + "api/stream" + (token ? "?token=" + encodeURIComponent(token) : "");
    var es = new EventSource(url);
    es.addEventListener("open", function () { $("conn").textContent = "live"; $("conn").className = "badge on"; });
    es.addEventListener("update", function (e) { onUpdate(JSON.parse(e.data)); });
    es.addEventListener("error", function () { $("conn").textContent = "reconnecting…"; $("conn").className = "badge off"; });
  }
  function frame() {
    if (redraw) { redraw = false; drawCharts(); }
    window.requestAnimationFrame(frame);
  }

  api("api/snapshot?history=1").then(function (s) {
    (s.history || []).forEach(function (h) { history.push(h); });
    showSnapshot(s); addHistory(s); drawCharts();
  }).catch(function () {});
  Promise.all([api("api/alerts"), api("api/scaling"), api("api/forecast")]).then(function (r) {
    showAlerts(r[0]); showScaling(r[1]); showForecast(r[2]);
  }).catch(function () {});
  loadTable();
  setInterval(loadTable, 3000);
  connect();
  window.requestAnimationFrame(frame);
})();
