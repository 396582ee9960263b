// The care console: live alarms over server-sent events, acknowledge and resolve through the
// JSON API, and a repeating tone while a high-priority alarm is unacknowledged.
"use strict";
(() => {
  const { t, names, lang } = JSON.parse(document.getElementById("i18n").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const list = document.getElementById("alarm-list");
  const empty = document.getElementById("empty");
  const live = document.getElementById("live");
  const rowTemplate = document.getElementById("alarm-row");
  const alarms = new Map();
  const rank = { high: 0, medium: 1, low: 2 };
  const banner = document.getElementById("stream-banner");
  const locale = lang === "zh" ? "zh-CN" : "en-GB";
  const when = (iso) => new Date(iso).toLocaleString(locale);
  const clock = (iso) => new Date(iso).toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });

  function upsert(alarm) {
    if (alarm.state === "resolved") alarms.delete(alarm.id);
    else alarms.set(alarm.id, alarm);
  }

  function render() {
    const sorted = [...alarms.values()].sort((a, b) =>
      (rank[a.priority] - rank[b.priority]) || (a.state === "open" ? 0 : 1) - (b.state === "open" ? 0 : 1)
      || b.opened_at.localeCompare(a.opened_at) || b.id - a.id);
    list.replaceChildren(...sorted.map(row));
    empty.hidden = sorted.length > 0;
    sound.update(sorted.some((a) => a.priority === "high" && a.state === "open"));
  }

  function row(alarm) {
    const li = rowTemplate.content.firstElementChild.cloneNode(true);
    li.dataset.alarmId = alarm.id;
    li.dataset.testid = "alarm-" + alarm.id;
    li.dataset.type = alarm.type;
    li.dataset.state = alarm.state;
    li.classList.add(alarm.priority, alarm.state);
    li.querySelector(".prio").textContent = t[alarm.priority];
    li.querySelector(".type").textContent = names[alarm.type] || alarm.type;
    li.querySelector(".state").textContent = t[alarm.state] +
      (alarm.acknowledged_by ? ` · ${t.by} ${alarm.acknowledged_by}` : "");
    li.querySelector(".count").textContent = alarm.count > 1 ? `× ${alarm.count}` : "";
    li.querySelector(".where").textContent = [
      alarm.facility_name || alarm.facility_id,
      alarm.room_name || alarm.room_id,
      alarm.bed_id ? `${t.bed} ${alarm.bed_id}` : null,
      alarm.resident_name,
      alarm.device_id,
    ].filter(Boolean).join(" · ");
    li.querySelector(".when").textContent = `${t.opened_at} ${when(alarm.opened_at)}`;
    li.querySelector(".evidence").href = `/console/alarms/${alarm.id}?lang=${lang}`;
    const ack = li.querySelector(".ack");
    ack.hidden = alarm.state !== "open";
    ack.addEventListener("click", () => act(li, `/api/v1/alarms/${alarm.id}/ack`,
      { note: li.querySelector(".note").value || null }));
    li.querySelector(".resolve").addEventListener("click", () => act(li, `/api/v1/alarms/${alarm.id}/resolve`,
      { resolution: li.querySelector(".resolution").value, note: li.querySelector(".note").value || null }));
    return li;
  }

  async function act(li, url, body) {
    li.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const payload = await response.json().catch(() => ({}));
    if (response.ok) {
      upsert(payload);
      render();
    } else {
      const error = li.querySelector(".error");
      error.textContent = typeof payload.detail === "string" ? payload.detail : response.statusText;
      error.hidden = false;
      li.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      if (response.status === 401) location.assign("/login?next=/console");
    }
  }

  async function reload() {
    const response = await fetch("/api/v1/alarms?state=unresolved&limit=500", { credentials: "same-origin" });
    if (response.status === 401) { location.assign("/login?next=/console"); return; }
    if (!response.ok) return;
    alarms.clear();
    (await response.json()).forEach(upsert);
    render();
  }

  // How far the list can be trusted: "live"; "degraded", the API is there but cannot reach
  // the database, so nothing comes through until it returns; "down", no connection to the API.
  function setLive(state, since) {
    live.dataset.state = state;
    live.textContent = { live: t.connected, degraded: t.paused, down: t.disconnected }[state];
    banner.hidden = state === "live";
    banner.dataset.kind = state === "degraded" ? "degraded" : "connection";
    banner.textContent = state === "degraded" ? t.stream_degraded.replace("{since}", clock(since))
      : state === "down" ? t.stream_reconnecting : "";
  }

  // The stream is opened first and the list loaded once it is ready, so no change can fall
  // between the two; after a reconnect or a resync the list is loaded again.
  let degradedSince = null;
  function connect() {
    const source = new EventSource("/api/v1/alarms/stream");
    source.addEventListener("ready", () => { degradedSince = null; setLive("live"); reload(); });
    source.addEventListener("degraded", (event) => {
      degradedSince = JSON.parse(event.data).since;
      setLive("degraded", degradedSince);
    });
    // A degraded stream sends nothing else until it recovers, and then a resync.
    source.addEventListener("resync", () => { degradedSince = null; setLive("live"); reload(); });
    source.addEventListener("alarm", (event) => { upsert(JSON.parse(event.data)); render(); });
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) {
        setLive("down"); // the browser reconnects by itself
        return;
      }
      source.close();
      retry();
    };
  }

  // A browser gives up on a stream that is refused (a 503 while the database is away, a
  // 401 once the session has ended): ask why, then log in again or try again later.
  async function retry() {
    let wait = 5;
    try {
      const response = await fetch("/api/v1/auth/me", { credentials: "same-origin" });
      if (response.status === 401) { location.assign("/login?next=/console"); return; }
      if (response.status === 503) {
        degradedSince = degradedSince || new Date().toISOString();
        setLive("degraded", degradedSince);
        wait = Number(response.headers.get("Retry-After")) || wait;
      } else {
        setLive("down");
        if (response.ok) wait = 1;
      }
    } catch {
      setLive("down");
    }
    setTimeout(connect, wait * 1000);
  }

  // IEC 60601-1-8 style: a high-priority tone repeats while such an alarm is unacknowledged.
  const sound = {
    button: document.getElementById("sound"),
    context: null,
    timer: null,
    enable() {
      this.context = this.context || new AudioContext();
      this.button.textContent = t.sound_off;
      this.button.disabled = true;
    },
    beep() {
      if (!this.context) return;
      const now = this.context.currentTime;
      [0, 0.2, 0.4].forEach((offset) => {
        const osc = this.context.createOscillator();
        const gain = this.context.createGain();
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.2, now + offset);
        gain.gain.setValueAtTime(0, now + offset + 0.15);
        osc.connect(gain).connect(this.context.destination);
        osc.start(now + offset);
        osc.stop(now + offset + 0.16);
      });
    },
    update(active) {
      document.body.dataset.alarming = active ? "high" : "";
      if (active && !this.timer) { this.beep(); this.timer = setInterval(() => this.beep(), 3000); }
      if (!active && this.timer) { clearInterval(this.timer); this.timer = null; }
    },
  };
  sound.button.addEventListener("click", () => sound.enable());
  connect();
})();
