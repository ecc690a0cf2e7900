// The roam demo dashboard: live updates from /api/dashboard/events, and the
// kill / start / add buttons as fetch calls. Without this script the page
// still works: it reloads itself, and the buttons are plain forms.
"use strict";

(function () {
  const HISTORY = 60; // sparkline points per node
  const history = new Map(); // node id -> recent requests/s
  const nodesEl = document.getElementById("nodes");
  const live = document.getElementById("live");
  const toast = document.getElementById("toast");
  let control = document.querySelector("form.add-form") !== null;
  // A notice the server rendered (after a plain form post) fades too.
  let toastTimer = toast.hidden ? 0 : setTimeout(() => { toast.hidden = true; }, 6000);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function actionForm(id, verb) {
    const f = el("form", "action " + verb + "-form");
    f.method = "post";
    f.action = "/api/nodes/" + encodeURIComponent(id) + "/" + verb;
    const b = el("button", verb, (verb === "kill" ? "Kill " : "Start ") + id);
    b.type = "submit";
    f.appendChild(b);
    return f;
  }

  // makeCard builds the same markup index.html renders for a node.
  function makeCard(id) {
    const a = el("article", "node");
    a.dataset.id = id;
    const h = el("header");
    h.appendChild(el("h3", "id", id));
    h.appendChild(el("span", "badge proc"));
    a.appendChild(h);
    const dl = el("dl");
    for (const [label, cls] of [["balancer sees", "lbstate"], ["requests/s", "rps"], ["sessions held", "sessions"],
      ["requests", "requests"], ["pid", "pid"], ["address", "addr"]]) {
      dl.appendChild(el("dt", "", label));
      dl.appendChild(el("dd", cls));
    }
    a.appendChild(dl);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 60 20");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    svg.appendChild(document.createElementNS("http://www.w3.org/2000/svg", "polyline"));
    a.appendChild(svg);
    if (control) {
      a.appendChild(actionForm(id, "kill"));
      a.appendChild(actionForm(id, "start"));
    }
    return a;
  }

  function set(card, cls, text) {
    const e = card.querySelector("." + cls);
    if (e && e.textContent !== text) e.textContent = text;
    return e;
  }

  function spark(card, id, rps) {
    let h = history.get(id);
    if (!h) {
      // Start from a flat line: a node the page has just met has had no
      // traffic the page saw.
      h = new Array(HISTORY - 1).fill(0);
      history.set(id, h);
    }
    h.push(rps);
    if (h.length > HISTORY) h.shift();
    let top = 1;
    for (const v of h) top = Math.max(top, v);
    const step = 60 / (HISTORY - 1);
    const offset = HISTORY - h.length;
    const pts = h.map((v, i) => ((offset + i) * step).toFixed(1) + "," + (19 - (v / top) * 18).toFixed(1));
    card.querySelector(".spark polyline").setAttribute("points", pts.join(" "));
  }

  function render(st) {
    control = st.control;
    const seen = new Set();
    for (const n of st.nodes) {
      seen.add(n.id);
      let card = nodesEl.querySelector('article[data-id="' + CSS.escape(n.id) + '"]');
      if (!card) {
        card = makeCard(n.id);
        nodesEl.appendChild(card);
      }
      card.classList.toggle("alive", n.alive);
      card.classList.toggle("dead", !n.alive);
      const proc = n.process || (n.alive ? "running" : "down");
      const badge = set(card, "proc", proc);
      badge.dataset.state = proc;
      badge.title = n.exit ? "last exit: " + n.exit : "";
      const lb = set(card, "lbstate", n.state);
      lb.className = "lbstate state-" + n.state;
      set(card, "rps", n.rps.toFixed(1));
      set(card, "sessions", n.sessions_text);
      set(card, "requests", String(n.requests));
      set(card, "pid", n.pid ? String(n.pid) : "—");
      set(card, "addr", (n.url || "").replace(/^[a-z]+:\/\//, ""));
      spark(card, n.id, n.rps);
      const kill = card.querySelector(".kill-form");
      const start = card.querySelector(".start-form");
      if (kill && !kill.dataset.busy) kill.hidden = !n.alive;
      if (start && !start.dataset.busy) start.hidden = n.alive;
    }
    for (const card of nodesEl.querySelectorAll("article.node")) {
      if (!seen.has(card.dataset.id)) card.remove();
    }
    document.getElementById("total-rps").textContent = st.rps.toFixed(1);
    const t = new Date(st.time);
    const upd = document.getElementById("updated");
    upd.dateTime = st.time;
    upd.textContent = t.toISOString().slice(11, 19) + " UTC";
  }

  function say(msg, ok) {
    toast.textContent = msg;
    toast.className = "notice " + (ok ? "ok" : "err");
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.hidden = true; }, 6000);
  }

  // Buttons: POST with fetch, so the page stays where it is.
  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!form.classList || !form.classList.contains("action")) return;
    ev.preventDefault();
    const button = form.querySelector("button");
    const label = button.textContent;
    form.dataset.busy = "1";
    button.disabled = true;
    button.textContent = form.classList.contains("kill-form") ? "killing…" : "starting…";
    try {
      const resp = await fetch(form.action, { method: "POST", headers: { Accept: "application/json" } });
      const body = await resp.json().catch(() => ({}));
      if (resp.ok) say(body.message || "done", true);
      else say(body.error || "failed: HTTP " + resp.status, false);
    } catch (e) {
      say("request failed: " + e, false);
    } finally {
      delete form.dataset.busy;
      button.disabled = false;
      button.textContent = label;
    }
  });

  function connect() {
    const es = new EventSource("/api/dashboard/events");
    es.addEventListener("state", (ev) => {
      live.textContent = "live";
      live.dataset.state = "live";
      render(JSON.parse(ev.data));
    });
    es.onerror = () => {
      live.textContent = "reconnecting…";
      live.dataset.state = "down";
    };
  }

  // The server-rendered page refreshes itself only in script-less browsers
  // (noscript); from here on the stream, or polling, keeps it current.
  if (window.EventSource) {
    connect();
  } else {
    setInterval(async () => {
      try {
        const resp = await fetch("/api/dashboard", { headers: { Accept: "application/json" } });
        if (resp.ok) render(await resp.json());
      } catch (e) { /* the next poll retries */ }
    }, 1000);
    live.textContent = "polling";
  }
})();
