// The console's behaviour: live stream, history chart, project map. No inline scripts (the
// CSP forbids them): each page says what it has with ids and data- attributes.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("console-data").textContent);
  var S = data.strings;
  function fmt(text, values) {
    return text.replace(/\{(\w+)\}/g, function (_, k) { return k in values ? values[k] : ""; });
  }

  document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });

  // a file input's own button and "no file" text are drawn by the browser in the browser's
  // language, not the console's: each is shown as a button and a name of our own (the
  // input stays in the form, out of sight, for the label, the form's checks and tests)
  document.querySelectorAll("input[type=file]").forEach(function (input) {
    var pick = document.createElement("button");
    pick.type = "button";
    pick.className = "file-pick";
    pick.textContent = S.choose_file;
    var name = document.createElement("span");
    name.className = "file-name muted";
    name.textContent = S.no_file;
    input.classList.add("file-hidden");
    input.tabIndex = -1;
    input.after(pick, name);
    pick.addEventListener("click", function () { input.click(); });
    input.addEventListener("change", function () {
      name.textContent = input.files.length ? Array.prototype.map.call(
        input.files, function (f) { return f.name; }).join(", ") : S.no_file;
    });
  });

  // a form that acts on something hard to undo asks first, naming it (data-ask)
  document.querySelectorAll("form[data-ask]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.dataset.ask)) ev.preventDefault();
    });
  });

  // -------------------------------------------------------------- live events
  var page = document.body.dataset.page;
  var live = document.getElementById("live");
  if (page === "home" || page === "project" || live) {
    var url = "/ui/stream" + (live ? "?readings=1&device=" + encodeURIComponent(live.dataset.device) : "");
    var source = new EventSource(url);
    var dots = document.querySelectorAll("[data-live-indicator]");
    source.addEventListener("open", function () {
      // when the page went live (ms since navigation start; scripts/bench_console.py reads it)
      if (!document.body.dataset.liveAt) document.body.dataset.liveAt = String(Math.round(performance.now()));
      dots.forEach(function (d) { d.classList.add("on"); d.title = ""; });
    });
    source.addEventListener("error", function () {
      dots.forEach(function (d) { d.classList.remove("on"); d.title = S.live_lost; });
    });
    source.addEventListener("event", function (msg) {
      document.body.dataset.liveEvents = String(Number(document.body.dataset.liveEvents || "0") + 1);
      document.body.dispatchEvent(new CustomEvent("hub:event", {detail: JSON.parse(msg.data)}));
    });
    // a device's values change in place as they are committed (no reload, no poll)
    var numbers = new Intl.NumberFormat(data.lang, {maximumFractionDigits: 2});
    var times = new Intl.DateTimeFormat(data.lang, {dateStyle: "medium", timeStyle: "medium"});
    source.addEventListener("reading", function (msg) {
      var r = JSON.parse(msg.data);
      var row = document.querySelector('tr[data-reading="' + r.quantity + "|" + r.channel + '"]');
      if (row) {
        row.querySelector("[data-v]").textContent = (r.value === null ? "—" : numbers.format(r.value)) + (r.unit ? " " + r.unit : "");
        row.querySelector("[data-ts]").textContent = times.format(new Date(r.ts * 1000));
      }
      document.body.dispatchEvent(new CustomEvent("hub:reading", {detail: r}));
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // -------------------------------------------------------------- history chart
  var chartEl = document.getElementById("chart");
  if (chartEl && window.echarts && document.getElementById("history-form")) {
    var chart = echarts.init(chartEl, null, {locale: data.lang.indexOf("zh") === 0 ? "ZH" : "EN"});
    var form = document.getElementById("history-form");
    var note = document.getElementById("chart-note");
    var load = function () {
      var series = form.elements.series.value.split("|");
      var q = new URLSearchParams({quantity: series[0], channel: series[1] || "", range: form.elements.range.value});
      fetch("/ui/devices/" + encodeURIComponent(form.dataset.device) + "/history?" + q, {
        credentials: "same-origin"
      }).then(function (r) {
        if (!r.ok) throw new Error(r.status);
        return r.json();
      }).then(function (h) {
        var pts = h.points.filter(function (p) { return p.n > 0; });
        var t = function (p) { return p.ts * 1000; };
        chart.setOption({
          animation: false,
          tooltip: {trigger: "axis"},
          legend: {top: 0, data: [S.avg, S.min, S.max]},
          grid: {top: 36, left: 56, right: 24, bottom: 64},
          dataZoom: [{type: "inside"}, {type: "slider"}],
          xAxis: {type: "time", axisLabel: {hideOverlap: true}},
          yAxis: {type: "value", scale: true},
          series: [
            {name: S.avg, type: "line", showSymbol: false, data: pts.map(function (p) { return [t(p), p.avg]; })},
            {name: S.min, type: "line", showSymbol: false, lineStyle: {type: "dashed"}, data: pts.map(function (p) { return [t(p), p.min]; })},
            {name: S.max, type: "line", showSymbol: false, lineStyle: {type: "dotted"}, data: pts.map(function (p) { return [t(p), p.max]; })}
          ]
        }, true);
        chartEl.dataset.points = String(pts.length);
        if (!chartEl.dataset.drawnAt) chartEl.dataset.drawnAt = String(Math.round(performance.now()));
        note.textContent = !pts.length ? S.no_data
          : h.raw_points <= pts.length ? fmt(S.raw, {raw: h.raw_points})
          : fmt(S.points, {raw: h.raw_points, bucket: h.bucket_seconds >= 10 ? Math.round(h.bucket_seconds) : h.bucket_seconds.toFixed(1)});
      }).catch(function () { chart.clear(); chartEl.dataset.points = "0"; note.textContent = S.no_data; });
    };
    form.addEventListener("change", load);
    window.addEventListener("resize", function () { chart.resize(); });
    load();
  }

  // -------------------------------------------------------------- project map
  var mapEl = document.getElementById("map");
  if (mapEl && window.L) {
    var points = JSON.parse(document.getElementById("map-data").textContent);
    var colours = {ok: "#1a7f37", fault: "#b26b00", alarm: "#c62828"};
    var tiles = data.tiles;
    var placed = points.filter(function (p) { return p.lat !== null && p.lon !== null; });
    var map;
    if (tiles.url) {
      map = L.map(mapEl);
      L.tileLayer(tiles.url, {attribution: tiles.attribution, subdomains: tiles.subdomains, maxZoom: 18}).addTo(map);
    } else {
      // no tile server: the projects on a plain canvas of their coordinates (x = lon, y = lat)
      map = L.map(mapEl, {crs: L.CRS.Simple, attributionControl: true, minZoom: -5});
      map.attributionControl.addAttribution(S.map_canvas);
    }
    var bounds = [];
    placed.forEach(function (p) {
      var m = L.circleMarker([p.lat, p.lon], {radius: 9, color: "#fff", weight: 2, fillColor: colours[p.state] || "#555", fillOpacity: 0.9});
      // names always shown on the plain canvas, unless there are so many that they would
      // cover each other (then on hover, as on a tiled map)
      m.bindTooltip(p.name + " · " + p.state_label, {permanent: !tiles.url && placed.length <= 30, direction: "right"});
      m.on("click", function () { window.location.href = p.href; });
      m.addTo(map);
      bounds.push([p.lat, p.lon]);
    });
    if (bounds.length > 1) map.fitBounds(bounds, {padding: [30, 30]});
    else if (bounds.length === 1) map.setView(bounds[0], tiles.url ? 14 : 0);
    else map.setView([35, 105], tiles.url ? 4 : 0);
    var missing = points.filter(function (p) { return p.lat === null || p.lon === null; });
    if (missing.length) {
      var list = document.createElement("ul");
      list.className = "unplaced";
      missing.forEach(function (p) {
        var li = document.createElement("li"), a = document.createElement("a");
        a.href = p.href; a.textContent = p.name + " · " + p.state_label + " (" + S.no_coords + ")";
        li.appendChild(a); list.appendChild(li);
      });
      mapEl.parentNode.insertBefore(list, mapEl.nextSibling);
    }
  }

  // -------------------------------------------------------------- alarm records: batch acts
  var batch = document.querySelector("form[data-batch]");
  if (batch) {
    var boxes = function () { return document.querySelectorAll("input[name=ids][form=batch]"); };
    var picked = function () { return document.querySelectorAll("input[name=ids][form=batch]:checked").length; };
    var countEl = document.getElementById("batch-count");
    var recount = function () { countEl.textContent = fmt(S.selected, {n: picked()}); };
    var all = document.getElementById("pick-all");
    if (all) all.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = all.checked; });
      recount();
    });
    boxes().forEach(function (b) { b.addEventListener("change", recount); });
    batch.addEventListener("submit", function (ev) {
      var n = picked();
      var act = batch.elements.action;
      if (!n) { ev.preventDefault(); window.alert(batch.dataset.none); return; }
      if (!window.confirm(fmt(batch.dataset.confirm, {n: n, action: act.options[act.selectedIndex].text}))) ev.preventDefault();
    });
  }

  // -------------------------------------------------------------- an alarm's reading curve
  var curveEl = document.querySelector("[data-curve]");
  if (curveEl && window.echarts) {
    var curve = echarts.init(curveEl, null, {locale: data.lang.indexOf("zh") === 0 ? "ZH" : "EN"});
    fetch(curveEl.dataset.curve, {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.json();
    }).then(function (c) {
      var pts = c.points.filter(function (p) { return p.n > 0; });
      curveEl.dataset.points = String(pts.length);
      var t = function (p) { return p.ts * 1000; };
      curve.setOption({
        animation: false, tooltip: {trigger: "axis"},
        legend: {top: 0, data: [curveEl.dataset.name, S.max]},
        grid: {top: 36, left: 56, right: 24, bottom: 64},
        dataZoom: [{type: "inside"}, {type: "slider"}],
        xAxis: {type: "time", axisLabel: {hideOverlap: true}}, yAxis: {type: "value", scale: true},
        series: [
          {name: curveEl.dataset.name, type: "line", showSymbol: false, data: pts.map(function (p) { return [t(p), p.avg]; }),
           markArea: {itemStyle: {color: "rgba(198,40,40,0.12)"}, label: {show: true, position: "insideTop", color: "#c62828"},
                      data: [[{name: S.alarm_span, xAxis: c.from * 1000}, {xAxis: c.to * 1000}]]}},
          {name: S.max, type: "line", showSymbol: false, lineStyle: {type: "dotted"}, data: pts.map(function (p) { return [t(p), p.max]; })}
        ]
      }, true);
      document.getElementById("chart-note").textContent = pts.length ? S.alarm_span_note : S.no_data;
    }).catch(function () { curveEl.dataset.points = "0"; document.getElementById("chart-note").textContent = S.no_data; });
    window.addEventListener("resize", function () { curve.resize(); });
  }

  // -------------------------------------------------------------- hazard photo upload
  var upload = document.querySelector("form[data-upload]");  // a hazard's or an item's photo, a floor plan
  if (upload) {
    var state = document.getElementById("upload-state");
    upload.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var file = document.getElementById("upload-file").files[0];
      if (!file) { state.textContent = S.pick_file; state.className = "err"; return; }
      state.textContent = S.uploading; state.className = "";
      var csrf = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"];
      var item = document.getElementById("upload-item");  // an inspection task's item
      fetch(upload.dataset.upload + "?name=" + encodeURIComponent(file.name) +
            (item ? "&item=" + encodeURIComponent(item.value) : ""), {
        method: "POST", credentials: "same-origin", body: file,
        headers: {"Content-Type": file.type || "application/octet-stream", "X-CSRF-Token": csrf}
      }).then(function (r) {
        return r.text().then(function (text) {
          var body = {};
          try { body = JSON.parse(text); } catch (e) { body = {}; }
          return {ok: r.ok, status: r.status, body: body};
        });
      }).then(function (res) {
        if (res.ok) { window.location.reload(); return; }
        state.textContent = res.body.error || (res.status === 413 ? S.too_large : res.status === 415 ? S.bad_type : S.upload_failed);
        state.className = "err";
      }).catch(function () { state.textContent = S.upload_failed; state.className = "err"; });
    });
  }

  // -------------------------------------------------------------- history: circuits compared
  var cmpEl = document.getElementById("compare-chart");
  if (cmpEl && window.echarts) {
    var cmp = echarts.init(cmpEl, null, {locale: data.lang.indexOf("zh") === 0 ? "ZH" : "EN"});
    var cmpNote = document.getElementById("chart-note");
    var links = [document.getElementById("export-csv"), document.getElementById("export-xlsx")];
    var window_ = null;
    // "the last hour" is fixed to the hour the chart shows, so the files hold its points
    var exportWindow = function (from, to) {
      links.forEach(function (a) {
        var u = new URL(a.href);
        u.searchParams.set("since", from.toFixed(3));
        u.searchParams.set("until", to.toFixed(3));
        a.href = u.pathname + u.search;
      });
    };
    fetch(cmpEl.dataset.src, {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) throw new Error(r.status);
      return r.json();
    }).then(function (h) {
      window_ = [h.since, h.until];
      exportWindow(h.since, h.until);
      var total = 0;
      var series = h.series.map(function (sr) {
        total += sr.points.length;
        return {name: sr.label, type: "line", showSymbol: false, sampling: "lttb",
                data: sr.points.map(function (p) { return [p[0] * 1000, p[1]]; })};
      });
      cmp.setOption({
        animation: false, tooltip: {trigger: "axis"},
        legend: {top: 0, type: "scroll"},
        grid: {top: 40, left: 56, right: 24, bottom: 70},
        toolbox: {right: 10, top: 22, feature: {dataZoom: {yAxisIndex: "none"}, restore: {}}},
        dataZoom: [{type: "inside"}, {type: "slider"}],
        xAxis: {type: "time", axisLabel: {hideOverlap: true}},
        yAxis: {type: "value", scale: true, name: h.unit},
        series: series
      }, true);
      cmpEl.dataset.series = String(series.length);
      cmpEl.dataset.points = String(total);
      cmpNote.textContent = total ? fmt(S.compare_note, {n: series.length, points: total}) : S.no_data;
    }).catch(function () { cmpEl.dataset.series = "0"; cmpEl.dataset.points = "0"; cmpNote.textContent = S.no_data; });
    // the export holds what is shown: the links follow the zoomed window
    cmp.on("datazoom", function () {
      if (!window_) return;
      // the axis' visible extent (ms): the zoom's percentages are of the data's extent,
      // not of the range asked for
      var ext = cmp.getModel().getComponent("xAxis", 0).axis.scale.getExtent();
      exportWindow(Math.max(window_[0], ext[0] / 1000), Math.min(window_[1], ext[1] / 1000));
      cmpEl.dataset.zoomed = "1";
    });
    window.addEventListener("resize", function () { cmp.resize(); });
  }

  // -------------------------------------------------------------- floor plan: place devices
  var placeForm = document.getElementById("place-form");
  if (placeForm) {
    var send = function (body) {
      fetch(placeForm.dataset.place, {method: "POST", credentials: "same-origin", body: body,
                                      headers: {"X-CSRF-Token": placeForm.elements.csrf.value}})
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          var box = document.getElementById("plan-box");
          box.innerHTML = html;
          box.dataset.placed = String(Number(box.dataset.placed || "0") + 1);
        });
    };
    placeForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = new URLSearchParams({csrf: placeForm.elements.csrf.value, device: placeForm.elements.device.value});
      var removing = ev.submitter && ev.submitter.name === "remove";
      if (!removing) {
        if (placeForm.elements.x.value === "" || placeForm.elements.y.value === "") return;
        body.set("x", String(Number(placeForm.elements.x.value) / 100));
        body.set("y", String(Number(placeForm.elements.y.value) / 100));
      }
      send(body);
    });
    // a click on the plan places the chosen device there (the fields above do the same by
    // keyboard)
    document.addEventListener("click", function (ev) {
      var img = ev.target.closest && ev.target.closest(".plan.placing img");
      if (!img) return;
      var box = img.getBoundingClientRect();
      placeForm.elements.x.value = ((ev.clientX - box.left) / box.width * 100).toFixed(1);
      placeForm.elements.y.value = ((ev.clientY - box.top) / box.height * 100).toFixed(1);
      placeForm.requestSubmit(document.getElementById("place-submit"));
    });
  }
})();
