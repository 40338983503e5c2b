// The Moonwire console: lists the live schema's methods (GET
// /console/schema), sends a request through the listener's own Connect JSON
// protocol, and shows what comes back. It follows reloads by polling
// /console/generation. No framework, no build step: the server serves this
// file as it is.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;
  let schema = null;      // the document of /console/schema
  let byPath = new Map(); // method path -> {service, method}
  let running = null;     // the AbortController of the call in flight

  // --- the schema -----------------------------------------------------------------

  async function loadSchema() {
    const res = await fetch("/console/schema", { cache: "no-store" });
    if (!res.ok) throw new Error("the schema: HTTP " + res.status);
    const doc = await res.json();
    const keep = $("method").value;
    schema = doc;
    byPath = new Map();
    const sel = $("method");
    sel.textContent = "";
    for (const svc of doc.services) {
      const group = document.createElement("optgroup");
      group.label = svc.name;
      for (const m of svc.methods) {
        const o = document.createElement("option");
        o.value = m.path;
        o.textContent = m.name + (m.kind === "unary" ? "" : "  (" + m.kind + ")");
        group.appendChild(o);
        byPath.set(m.path, { service: svc, method: m });
      }
      sel.appendChild(group);
    }
    const gen = $("generation");
    gen.textContent = "generation " + doc.generation;
    gen.dataset.generation = String(doc.generation);
    if (keep && byPath.has(keep)) {
      sel.value = keep; // the editor keeps what was typed
      describe();
    } else {
      selectFirstUserMethod();
    }
  }

  // The first method that is not one of the built-in services.
  function selectFirstUserMethod() {
    const sel = $("method");
    let first = null;
    for (const [path] of byPath) {
      if (first === null) first = path;
      if (!path.startsWith("/grpc.health.") && !path.startsWith("/grpc.reflection.")) {
        first = path;
        break;
      }
    }
    if (first !== null) sel.value = first;
    resetRequest();
  }

  function current() {
    return byPath.get($("method").value) || null;
  }

  function clientSends(m) {
    return m.kind === "client-streaming" || m.kind === "bidi-streaming";
  }

  function describe() {
    const c = current();
    if (!c) {
      $("signature").textContent = "";
      return;
    }
    const m = c.method;
    const stream = (k) => (k ? "stream " : "");
    $("signature").textContent =
      "rpc " + m.name + "(" + stream(clientSends(m)) + m.input + ") returns (" +
      stream(m.kind === "server-streaming" || m.kind === "bidi-streaming") + m.output + ")";
    $("request-hint").textContent = clientSends(m)
      ? "(a JSON array: the messages to send, all at once)"
      : "(JSON)";
  }

  function resetRequest() {
    describe();
    const c = current();
    if (!c) {
      $("request").value = "";
      return;
    }
    const t = c.method.template;
    $("request").value = JSON.stringify(clientSends(c.method) ? [t] : t, null, 2);
  }

  // A reload makes a new generation: fetch the schema again.
  async function poll() {
    try {
      const res = await fetch("/console/generation", { cache: "no-store" });
      if (res.ok) {
        const g = (await res.json()).generation;
        if (schema && g !== schema.generation) {
          await loadSchema();
          $("generation").classList.add("changed");
          setTimeout(() => $("generation").classList.remove("changed"), 1500);
        }
      }
    } catch (e) {
      // the server is restarting or gone: try again at the next turn
    }
    setTimeout(poll, POLL_MS);
  }

  // --- showing results --------------------------------------------------------------

  function clearResult() {
    $("status").textContent = "…";
    $("status").className = "";
    $("timing").textContent = "";
    $("error").hidden = true;
    $("error-message").textContent = "";
    $("error-details").textContent = "";
    $("messages").textContent = "";
    fillTable($("headers"), []);
    fillTable($("trailers"), []);
  }

  function fillTable(table, pairs) {
    table.textContent = "";
    if (pairs.length === 0) {
      const td = table.insertRow().insertCell();
      td.colSpan = 2;
      td.className = "empty";
      td.textContent = "none";
      return;
    }
    for (const [k, v] of pairs) {
      const row = table.insertRow();
      row.insertCell().textContent = k;
      row.insertCell().textContent = v;
    }
  }

  function addMessage(msg) {
    const box = $("messages");
    const pre = document.createElement("pre");
    pre.className = "message";
    const n = document.createElement("span");
    n.className = "n";
    n.textContent = "#" + (box.children.length + 1);
    pre.appendChild(n);
    pre.appendChild(document.createTextNode(JSON.stringify(msg, null, 2)));
    box.appendChild(pre);
  }

  function showStatus(ok, text) {
    $("status").textContent = text;
    $("status").className = ok ? "ok" : "bad";
  }

  // A Connect error: {code, message, details: [{type, value, debug}]}.
  function showError(err, httpStatus) {
    const code = (err && err.code) || "unknown";
    showStatus(false, code + (httpStatus && httpStatus !== 200 ? " (HTTP " + httpStatus + ")" : ""));
    $("error").hidden = false;
    $("error-message").textContent = (err && err.message) || "(no message)";
    const list = $("error-details");
    list.textContent = "";
    for (const d of (err && err.details) || []) {
      const li = document.createElement("li");
      li.textContent = d.type + "  value (base64): " + (d.value || "");
      list.appendChild(li);
      decodeDetail(d, li);
    }
  }

  // A detail's bytes as JSON, decoded by the server with the live schema
  // (the google.rpc details, and the services' own types); left as base64
  // when its type is not known there.
  async function decodeDetail(d, li) {
    try {
      const q = "type=" + encodeURIComponent(d.type) + "&value=" + encodeURIComponent(d.value || "");
      const res = await fetch("/console/detail?" + q, { cache: "no-store" });
      if (!res.ok) return;
      const json = await res.json();
      li.textContent = d.type + " " + JSON.stringify(json);
      li.dataset.decoded = "1";
    } catch (e) {
      // the base64 form stays
    }
  }

  function showTiming(t0, tHead) {
    const total = performance.now() - t0;
    let s = total.toFixed(1) + " ms";
    if (tHead !== null) s += " (headers after " + (tHead - t0).toFixed(1) + " ms)";
    $("timing").textContent = s;
  }

  // Response headers, and Connect unary's trailers (trailer-*), apart.
  function splitHeaders(headers, unary) {
    const h = [], t = [];
    headers.forEach((v, k) => {
      if (unary && k.startsWith("trailer-")) t.push([k.slice(8), v]);
      else h.push([k, v]);
    });
    return [h, t];
  }

  // --- calling ----------------------------------------------------------------------

  function requestHeaders(contentType) {
    const h = new Headers({ "content-type": contentType, "connect-protocol-version": "1" });
    for (const line of $("metadata").value.split("\n")) {
      const s = line.trim();
      if (!s) continue;
      const i = s.indexOf(":");
      if (i <= 0) throw new Error("metadata: '" + s + "' is not key: value");
      h.append(s.slice(0, i).trim().toLowerCase(), s.slice(i + 1).trim());
    }
    const d = $("deadline").value.trim();
    if (d) {
      if (!/^[1-9][0-9]{0,9}$/.test(d)) throw new Error("the deadline must be a whole number of milliseconds");
      h.set("connect-timeout-ms", d);
    }
    return h;
  }

  function parseRequest(m) {
    let v;
    try {
      v = JSON.parse($("request").value || "{}");
    } catch (e) {
      throw new Error("the request is not JSON: " + e.message);
    }
    if (clientSends(m)) {
      if (!Array.isArray(v)) throw new Error("this method takes a stream: give a JSON array of messages");
      return v;
    }
    return [v];
  }

  function envelope(flags, bytes) {
    const out = new Uint8Array(5 + bytes.length);
    out[0] = flags;
    new DataView(out.buffer).setUint32(1, bytes.length);
    out.set(bytes, 5);
    return out;
  }

  async function unary(url, m, msgs, signal, t0) {
    const res = await fetch(url, {
      method: "POST", headers: requestHeaders("application/json"),
      body: JSON.stringify(msgs[0]), signal, cache: "no-store",
    });
    const tHead = performance.now();
    const [h, t] = splitHeaders(res.headers, true);
    fillTable($("headers"), h);
    fillTable($("trailers"), t);
    const text = await res.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch (e) {
      body = null;
    }
    if (res.ok && body !== null) {
      addMessage(body);
      showStatus(true, "ok");
    } else {
      showError(body || { code: "unknown", message: text.trim() }, res.status);
    }
    showTiming(t0, tHead);
  }

  async function streaming(url, m, msgs, signal, t0) {
    const enc = new TextEncoder();
    const parts = msgs.map((x) => envelope(0, enc.encode(JSON.stringify(x))));
    const res = await fetch(url, {
      method: "POST", headers: requestHeaders("application/connect+json"),
      body: new Blob(parts), signal, cache: "no-store",
    });
    const tHead = performance.now();
    fillTable($("headers"), splitHeaders(res.headers, false)[0]);
    const ct = res.headers.get("content-type") || "";
    if (!ct.startsWith("application/connect+")) {
      const text = await res.text();
      let body = null;
      try { body = JSON.parse(text); } catch (e) { /* plain text */ }
      showError(body || { code: "unknown", message: text.trim() }, res.status);
      showTiming(t0, tHead);
      return;
    }
    // Envelopes as they arrive: each message is shown when its bytes are in.
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = new Uint8Array(0), ended = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (value) {
        const joined = new Uint8Array(buf.length + value.length);
        joined.set(buf);
        joined.set(value, buf.length);
        buf = joined;
      }
      while (buf.length >= 5) {
        const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
        if (buf.length < 5 + len) break;
        const flags = buf[0];
        const data = JSON.parse(dec.decode(buf.subarray(5, 5 + len)) || "{}");
        buf = buf.slice(5 + len);
        if (flags & 2) {
          ended = true;
          const t = [];
          for (const [k, vs] of Object.entries(data.metadata || {}))
            for (const v of vs) t.push([k, v]);
          fillTable($("trailers"), t);
          if (data.error) showError(data.error, 200);
          else showStatus(true, "ok");
        } else {
          addMessage(data);
          $("status").textContent = "receiving… (" + $("messages").children.length + ")";
        }
      }
      if (done) break;
    }
    if (!ended) showError({ code: "unknown", message: "the stream ended without its end message" }, res.status);
    showTiming(t0, tHead);
  }

  async function send() {
    const c = current();
    if (!c || running) return;
    clearResult();
    const m = c.method;
    const url = (schema.call_base || "") + m.path;
    const ctl = new AbortController();
    running = ctl;
    $("send").disabled = true;
    $("cancel").disabled = false;
    const t0 = performance.now();
    try {
      const msgs = parseRequest(m);
      if (m.kind === "unary") await unary(url, m, msgs, ctl.signal, t0);
      else await streaming(url, m, msgs, ctl.signal, t0);
    } catch (e) {
      showError({ code: ctl.signal.aborted ? "canceled" : "local", message: e.message }, 0);
      showTiming(t0, null);
    } finally {
      running = null;
      $("send").disabled = false;
      $("cancel").disabled = true;
    }
  }

  // --- start ----------------------------------------------------------------------

  $("method").addEventListener("change", resetRequest);
  $("reset").addEventListener("click", resetRequest);
  $("send").addEventListener("click", send);
  $("cancel").addEventListener("click", () => running && running.abort());
  $("request").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send();
  });
  loadSchema()
    .catch((e) => { $("generation").textContent = e.message; })
    .finally(() => setTimeout(poll, POLL_MS));
})();
