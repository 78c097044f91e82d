// app.js: the Hodei web UI. A client of the REST API under /api/v1 only.
(function () {
  "use strict";

  var main = document.getElementById("main");
  var conn = document.getElementById("conn");
  var leave = []; // run when the page changes: close streams, stop timers

  // h builds an element: h("a", {href: "#", className: "x"}, "text", child...).
  function h(tag, props) {
    var e = document.createElement(tag);
    if (props) for (var k in props) {
      if (k === "dataset") for (var d in props.dataset) e.dataset[d] = props.dataset[d];
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), props[k]);
      else if (k === "for") e.htmlFor = props[k];
      else e[k] = props[k];
    }
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function add(e, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { add(e, x); }); return; }
    e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

  // apiToken is the API token: taken once from "?token=…" (then removed from
  // the address bar and kept for this tab), or asked for after a 401.
  var apiToken = (function () {
    var q = new URLSearchParams(location.search), t = q.get("token");
    if (t) {
      sessionStorage.setItem("hodei-token", t);
      q.delete("token");
      history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : "") + location.hash);
    }
    return sessionStorage.getItem("hodei-token") || "";
  })();
  function askToken() {
    var t = window.prompt("API token (hodei token create --role viewer, or data/admin.token):");
    if (t) { sessionStorage.setItem("hodei-token", t.trim()); location.reload(); }
  }

  // call sends a REST request; errors reject with the API's ErrorBody.
  function call(method, path, body) {
    var opts = { method: method, headers: {} };
    if (apiToken) opts.headers.Authorization = "Bearer " + apiToken;
    if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
    return fetch(path, opts).then(function (r) {
      if (r.status === 204) return null;
      return r.json().catch(function () { return { error: r.status + " " + r.statusText }; }).then(function (j) {
        if (r.status === 401) askToken();
        if (!r.ok) { j.status = r.status; throw j; }
        return j;
      });
    });
  }

  function stream(url, handlers) {
    if (apiToken) url += (url.indexOf("?") < 0 ? "?" : "&") + "access_token=" + encodeURIComponent(apiToken);
    var es = new EventSource(url);
    Object.keys(handlers).forEach(function (k) { es.addEventListener(k, handlers[k]); });
    es.onopen = function () { conn.className = "conn live"; };
    es.onerror = function () { conn.className = "conn down"; };
    leave.push(function () { es.close(); });
    return es;
  }

  var terminal = { succeeded: 1, failed: 1, cancelled: 1, timed_out: 1 };
  function badge(status, extra) { return h("span", { className: "badge s-" + status }, extra || status.replace("_", " ")); }
  function ago(iso) {
    if (!iso) return "";
    var s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 60) return Math.floor(s) + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 172800) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }
  function when(iso) { return iso ? new Date(iso).toLocaleString() + " (" + ago(iso) + ")" : "—"; }
  function bytes(n) {
    if (!n) return "0";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1).replace(/\.0$/, "") : n) + " " + u[i];
  }
  function pairs(m) { return m ? Object.keys(m).sort().map(function (k) { return k + "=" + m[k]; }).join(", ") : ""; }
  function exitOf(j) { return terminal[j.status] && j.exit_code >= 0 ? String(j.exit_code) : "—"; }

  // ---------------------------------------------------------------- jobs list

  function jobsPage() {
    var filter = h("select", { id: "status-filter", onchange: function () { load(true); } },
      ["all", "queued", "running", "succeeded", "failed", "cancelled", "timed_out"].map(function (s) {
        return h("option", { value: s === "all" ? "" : s }, s.replace("_", " "));
      }));
    var body = h("tbody", { id: "jobs" });
    var more = h("button", { onclick: function () { load(false); }, hidden: true }, "Load more");
    var table = h("table", null, h("thead", null, h("tr", null,
      ["ID", "Name", "Status", "Queue", "Worker", "Attempt", "Exit", "Submitted"].map(function (t) { return h("th", null, t); }))), body);
    var empty = h("div", { className: "empty", hidden: true }, "No jobs yet. ", h("a", { href: "#/submit" }, "Submit one."));
    main.append(h("h1", null, "Jobs"), h("div", { className: "toolbar" }, h("label", { for: "status-filter" }, "Status"), filter),
      h("div", { className: "panel" }, table, empty), h("div", { className: "toolbar" }, more));

    var rows = {}, token = "", es = null;
    function row(j) {
      var tr = rows[j.id] || h("tr", { dataset: { id: j.id } });
      clear(tr);
      var st = j.parked ? badge("queued", "queued · parked") : badge(j.status);
      if (j.parked) st.title = j.parked;
      add(tr, [h("td", { className: "id" }, h("a", { href: "#/jobs/" + j.id }, j.id)), h("td", { className: "name", title: j.name }, j.name),
        h("td", { className: "status" }, st), h("td", null, j.queue), h("td", { className: "id" }, j.worker || "—"),
        h("td", null, j.attempt || "—"), h("td", null, exitOf(j)), h("td", { className: "muted", title: j.submitted_at }, ago(j.submitted_at))]);
      tr._job = j;
      rows[j.id] = tr;
      return tr;
    }
    function load(reset) {
      var q = "/api/v1/jobs?page_size=100";
      if (filter.value) q += "&status=" + filter.value;
      if (!reset && token) q += "&page_token=" + encodeURIComponent(token);
      call("GET", q).then(function (r) {
        if (reset) { clear(body); rows = {}; }
        r.jobs.forEach(function (j) { body.appendChild(row(j)); });
        token = r.next_page_token || "";
        more.hidden = !token;
        empty.hidden = body.children.length > 0;
        if (reset) follow(r.position);
      }).catch(showError);
    }
    // follow keeps the list live from the position the list reflects.
    function follow(position) {
      if (es) es.close();
      es = stream("/api/v1/events?from=" + (position + 1), { event: function (m) { onEvent(JSON.parse(m.data)); } });
    }
    function onEvent(e) {
      if (e.stream.indexOf("job-") !== 0) return;
      var id = e.stream.slice(4), p = e.payload || {}, tr = rows[id];
      if (e.type === "job.submitted") {
        if (filter.value && filter.value !== "queued") return;
        var s = p.spec || {};
        var j = { id: id, name: s.name, status: "queued", queue: s.queue, worker: "", attempt: 0, exit_code: -1, submitted_at: p.at };
        body.insertBefore(row(j), body.firstChild);
        empty.hidden = true;
        return;
      }
      if (!tr) return;
      var j2 = tr._job;
      switch (e.type) {
        case "job.parked": j2.parked = p.reason; break;
        case "job.unparked": j2.parked = ""; break;
        case "job.scheduled": j2.status = "scheduled"; j2.worker = p.worker_id; j2.attempt = p.attempt; j2.parked = ""; break;
        case "job.accepted": j2.status = "accepted"; break;
        case "job.started": j2.status = "running"; break;
        case "job.requeued": j2.status = "queued"; j2.worker = ""; break;
        case "job.succeeded": j2.status = "succeeded"; j2.exit_code = 0; break;
        case "job.failed": j2.status = "failed"; j2.exit_code = p.exit_code; break;
        case "job.cancelled": j2.status = "cancelled"; j2.exit_code = p.exit_code; break;
        case "job.timed_out": j2.status = "timed_out"; j2.exit_code = p.exit_code; break;
        default: return;
      }
      row(j2);
    }
    load(true);
  }

  // ---------------------------------------------------------------- one job

  function jobPage(id) {
    var title = h("h1", null, "Job ", h("span", { className: "mono" }, id));
    var details = h("div", { className: "panel" });
    var logBox = h("div", { className: "log", id: "log", tabIndex: 0 });
    var timeline = h("ul", { className: "timeline", id: "timeline" });
    main.append(title, h("div", { className: "grid2" },
      h("div", null, details, h("h2", null, "Log"), logBox),
      h("div", null, h("h2", null, "Timeline"), h("div", { className: "panel" }, timeline))));

    function render(j) {
      clear(title);
      var cancel = h("button", { className: "danger", id: "cancel", onclick: function () {
        if (!confirm("Cancel job " + j.id + "?")) return;
        cancel.disabled = true;
        call("POST", "/api/v1/jobs/" + j.id + "/cancel", {}).then(render).catch(showError);
      } }, "Cancel");
      add(title, [j.spec.name || "Job", badge(j.status, j.status.replace("_", " ") + (terminal[j.status] && j.status !== "succeeded" && j.exit_code >= 0 ? " · exit " + j.exit_code : "")),
        h("span", { className: "mono muted" }, j.id), terminal[j.status] || j.cancel_requested ? null : cancel]);
      clear(details);
      var s = j.spec, r = s.resources || {}, res = (r.slots || 1) + " slot(s)";
      if (r.cpu_millis) res += ", " + r.cpu_millis + "m CPU";
      if (r.memory_bytes) res += ", " + bytes(r.memory_bytes);
      var kv = [["Status", j.status + (j.parked ? " (parked: " + j.parked + ")" : "") + (j.reason ? " — " + j.reason : "")],
        ["Submitted", when(j.submitted_at) + " by " + j.submitter], ["Started", when(j.started_at)], ["Ended", when(j.ended_at)],
        ["Runtime", j.runtime || "—"], ["Worker", j.worker || (j.attempts && j.attempts.length ? j.attempts[j.attempts.length - 1].worker : "") || "—"], ["Attempt", (j.attempt || 0) + " of " + s.max_attempts],
        ["Queue", s.queue + " · priority " + s.priority], ["Resources", res], ["Timeout", s.timeout || "none"],
        ["Labels", pairs(s.labels) || "—"], ["Selector", pairs(s.selector) || "—"], ["Env", pairs(s.env) || "—"],
        ["Secrets", pairs(s.secrets) || "—"]];
      add(details, [h("dl", { className: "kv" }, kv.map(function (p) { return [h("dt", null, p[0]), h("dd", null, p[1])]; })),
        h("pre", { className: "script" }, s.script)]);
    }

    var last = 0;
    function addEvent(e) {
      var p = e.payload || {}, d = [];
      ["worker_id", "attempt", "exit_code", "signal", "reason", "by"].forEach(function (k) {
        if (p[k] !== undefined && p[k] !== "" && !(k === "exit_code" && p[k] < 0)) d.push(k.replace("_id", "") + " " + p[k]);
      });
      timeline.appendChild(h("li", { dataset: { type: e.type } }, h("div", null, h("span", { className: "ty" }, e.type), " ",
        h("span", { className: "t" }, "#" + e.position + " · " + new Date(e.time).toLocaleTimeString() + " · " + e.actor)),
        d.length ? h("div", { className: "d" }, d.join(" · ")) : null));
      last = e.position;
    }

    // The log: SSE from /log?follow=1, rendered by ansi.js.
    var renderer = new HodeiAnsi.Renderer(logBox), attempt = 0;
    function note(text) { logBox.appendChild(h("div", { className: "line note" }, text)); renderer.line = null; }
    stream("/api/v1/jobs/" + encodeURIComponent(id) + "/log?follow=1", {
      log: function (m) {
        var c = JSON.parse(m.data), stick = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
        if (attempt && c.attempt !== attempt) note("— attempt " + c.attempt + " —");
        attempt = c.attempt;
        renderer.write(c.text);
        if (stick) logBox.scrollTop = logBox.scrollHeight;
      },
      end: function (m) {
        var e = JSON.parse(m.data);
        renderer.flush();
        note("— end of log" + (e.status ? ": " + e.status + (e.exit_code >= 0 ? ", exit code " + e.exit_code : "") : "") + " —");
        m.target.close();
      },
      error: function (m) { if (m.data) { note("— " + JSON.parse(m.data).error + " —"); m.target.close(); } }
    });

    call("GET", "/api/v1/jobs/" + encodeURIComponent(id)).then(function (j) {
      render(j);
      return call("GET", "/api/v1/jobs/" + encodeURIComponent(id) + "/events");
    }).then(function (r) {
      r.events.forEach(addEvent);
      stream("/api/v1/events?stream=job-" + encodeURIComponent(id) + "&from=" + (last + 1), {
        event: function (m) {
          var e = JSON.parse(m.data);
          if (e.position <= last) return;
          addEvent(e);
          call("GET", "/api/v1/jobs/" + encodeURIComponent(id)).then(render).catch(function () {});
        }
      });
    }).catch(showError);
  }

  // ---------------------------------------------------------------- workers

  function workersPage() {
    var body = h("tbody", { id: "workers" });
    var empty = h("div", { className: "empty", hidden: true }, "No workers yet. Start one with: hodei-agent --server <address>");
    main.append(h("h1", null, "Workers"), h("div", { className: "panel" }, h("table", null, h("thead", null, h("tr", null,
      ["Name", "ID", "Status", "Jobs", "Slots", "CPU", "Memory", "Labels", ""].map(function (t) { return h("th", null, t); }))), body), empty));
    function bar(frac, text) {
      var b = h("span", { className: "bar" + (frac > 0.9 ? " crit" : frac > 0.7 ? " hi" : "") }, h("i"));
      b.firstChild.style.width = Math.round(Math.min(Math.max(frac, 0), 1) * 100) + "%";
      return [b, text];
    }
    function load() {
      call("GET", "/api/v1/workers").then(function (r) {
        clear(body);
        empty.hidden = r.workers.length > 0;
        r.workers.forEach(function (w) {
          var t = w.telemetry, st = w.status + (w.draining ? " · draining" : "") + (w.status === "online" && !w.connected ? " · disconnected" : "");
          var drain = h("button", { onclick: function () {
            if (!confirm("Drain worker " + w.name + "? It finishes its running jobs and takes no new ones.")) return;
            call("POST", "/api/v1/workers/" + encodeURIComponent(w.id) + "/drain", {}).then(load).catch(showError);
          } }, "Drain");
          body.appendChild(h("tr", { dataset: { id: w.id } }, h("td", null, w.name), h("td", { className: "id" }, w.id),
            h("td", null, badge(w.draining ? "draining" : w.status, st)), h("td", null, w.active_jobs),
            h("td", null, w.reserved.slots + "/" + w.capacity.slots),
            h("td", { className: "cpu" }, t ? bar(t.cpu_percent / 100, t.cpu_percent.toFixed(0) + "%") : "—"),
            h("td", { className: "mem" }, t && t.memory_total_bytes ? bar(t.memory_used_bytes / t.memory_total_bytes,
              bytes(t.memory_used_bytes) + " / " + bytes(t.memory_total_bytes)) : "—"),
            h("td", { className: "wrap muted" }, pairs(w.labels)), h("td", null, w.status === "online" && !w.draining ? drain : null)));
        });
        conn.className = "conn live";
      }).catch(function (e) { conn.className = "conn down"; showError(e); });
    }
    load();
    var timer = setInterval(load, 2000); // telemetry is not an event: poll it
    leave.push(function () { clearInterval(timer); });
  }

  // ---------------------------------------------------------------- submit

  // Form fields by the API's field names, for pointing at errors.
  var formFields = { "spec.name": "f-name", "spec.script": "f-script", "spec.env": "f-env", "spec.secrets": "f-secrets",
    "spec.labels": "f-labels", "spec.selector": "f-selector", "spec.resources.cpu_millis": "f-cpu",
    "spec.resources.memory_bytes": "f-memory", "spec.resources.slots": "f-slots", "spec.priority": "f-priority",
    "spec.timeout": "f-timeout", "spec.max_attempts": "f-attempts", "spec.queue": "f-queue" };

  function newKey() {
    if (window.crypto && crypto.randomUUID) return "ui-" + crypto.randomUUID();
    return "ui-" + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function submitPage() {
    var key = newKey();
    function field(id, label, input, hint) {
      input.id = id;
      return [h("label", { for: id }, label), h("div", null, input, hint ? h("div", { className: "hint" }, hint) : null)];
    }
    var err = h("div", { className: "error", id: "submit-error", hidden: true });
    var form = h("form", { className: "submit panel", id: "submit-form", onsubmit: onSubmit },
      field("f-name", "Name", h("input", { required: true, placeholder: "build", size: 40 })),
      field("f-script", "Script", h("textarea", { required: true, placeholder: "echo hello\nmake test", spellcheck: false }), "run by /bin/sh in a PTY"),
      field("f-env", "Env", h("textarea", { rows: 2, placeholder: "KEY=value (one per line)" })),
      field("f-secrets", "Secrets", h("textarea", { rows: 2, placeholder: "ENV_NAME=secret-name (one per line)" })),
      field("f-labels", "Labels", h("input", { placeholder: "team=infra, kind=build", size: 40 })),
      field("f-selector", "Selector", h("input", { placeholder: "os=linux (worker labels required)", size: 40 })),
      h("label", null, "Resources"), h("div", { className: "row" },
        h("input", { id: "f-slots", placeholder: "slots (1)", inputMode: "numeric" }),
        h("input", { id: "f-cpu", placeholder: "CPU: 2, 500m" }),
        h("input", { id: "f-memory", placeholder: "memory: 512Mi" })),
      h("label", null, "Limits"), h("div", { className: "row" },
        h("input", { id: "f-priority", placeholder: "priority (50)", inputMode: "numeric" }),
        h("input", { id: "f-timeout", placeholder: "timeout: 30m" }),
        h("input", { id: "f-attempts", placeholder: "attempts (3)", inputMode: "numeric" }),
        h("input", { id: "f-queue", placeholder: "queue (default)" })),
      h("span"), h("div", null, h("button", { className: "primary", type: "submit", id: "f-submit" }, "Submit")));
    main.append(h("h1", null, "Submit a job"), err, form);

    function val(id) { return document.getElementById(id).value.trim(); }
    function kv(id, sep) {
      var out = {}, any = false;
      val(id).split(sep).forEach(function (p) {
        p = p.trim();
        if (!p) return;
        var i = p.indexOf("=");
        if (i <= 0) throw { error: "want key=value, got \"" + p + "\"", field: Object.keys(formFields).find(function (k) { return formFields[k] === id; }) };
        out[p.slice(0, i).trim()] = p.slice(i + 1).trim();
        any = true;
      });
      return any ? out : undefined;
    }
    function int(id, field) {
      var v = val(id);
      if (!v) return undefined;
      if (!/^-?\d+$/.test(v)) throw { error: "\"" + v + "\" is not a whole number", field: field };
      return parseInt(v, 10);
    }
    function cpu(v) {
      if (!v) return undefined;
      var m = /^(\d+)m$/.exec(v);
      if (m) return parseInt(m[1], 10);
      if (!/^\d*\.?\d+$/.test(v)) throw { error: "CPU \"" + v + "\": want cores like 2 or 0.5, or millicores like 500m", field: "spec.resources.cpu_millis" };
      return Math.round(parseFloat(v) * 1000);
    }
    function mem(v) {
      if (!v) return undefined;
      var m = /^(\d*\.?\d+)\s*([kmgt]i?)?b?$/i.exec(v);
      if (!m) throw { error: "memory \"" + v + "\": want bytes or a size like 512Mi or 4Gi", field: "spec.resources.memory_bytes" };
      var u = (m[2] || "").toLowerCase(), p = { "": 0, k: 1, m: 2, g: 3, t: 4 }[u.charAt(0)];
      return Math.round(parseFloat(m[1]) * Math.pow(u.length === 2 ? 1024 : 1000, p));
    }
    function onSubmit(ev) {
      ev.preventDefault();
      err.hidden = true;
      Array.prototype.forEach.call(form.querySelectorAll(".invalid"), function (e) { e.classList.remove("invalid"); });
      var body;
      try {
        body = { idempotency_key: key, spec: {
          name: val("f-name"), script: document.getElementById("f-script").value, env: kv("f-env", /\n/),
          secrets: kv("f-secrets", /\n/), labels: kv("f-labels", /[,\n]/), selector: kv("f-selector", /[,\n]/),
          resources: { slots: int("f-slots", "spec.resources.slots") || 0, cpu_millis: cpu(val("f-cpu")) || 0, memory_bytes: mem(val("f-memory")) || 0 },
          priority: int("f-priority", "spec.priority"), timeout: val("f-timeout") || undefined,
          max_attempts: int("f-attempts", "spec.max_attempts"), queue: val("f-queue") || undefined } };
      } catch (e) { return showFormError(e); }
      var btn = document.getElementById("f-submit");
      btn.disabled = true;
      call("POST", "/api/v1/jobs", body).then(function (r) {
        key = newKey();
        location.hash = "#/jobs/" + r.job.id;
      }).catch(function (e) { btn.disabled = false; showFormError(e); });
    }
    function showFormError(e) {
      clear(err);
      add(err, e.error || String(e));
      err.hidden = false;
      var f = e.field || "", id = formFields[f] || formFields[f.replace(/\[.*$/, "")];
      if (id) { var input = document.getElementById(id); input.classList.add("invalid"); input.focus(); }
    }
  }

  // ---------------------------------------------------------------- routing

  function showError(e) {
    var box = document.getElementById("page-error") || h("div", { className: "error", id: "page-error" });
    clear(box);
    add(box, e && e.error ? e.error : String(e));
    main.insertBefore(box, main.firstChild);
  }

  function route() {
    leave.forEach(function (f) { f(); });
    leave = [];
    clear(main);
    conn.className = "conn";
    var parts = (location.hash || "#/jobs").slice(2).split("/");
    Array.prototype.forEach.call(document.querySelectorAll("[data-nav]"), function (a) {
      a.classList.toggle("active", a.dataset.nav === parts[0]);
    });
    if (parts[0] === "jobs" && parts[1]) jobPage(decodeURIComponent(parts[1]));
    else if (parts[0] === "workers") workersPage();
    else if (parts[0] === "submit") submitPage();
    else jobsPage();
  }
  window.addEventListener("hashchange", route);
  route();
})();
