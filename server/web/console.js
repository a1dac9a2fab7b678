// The dispatcher console: login, the queue of open alerts, a map of the selected alert's live
// track over the precinct outlines (no tiles needed), and ack / resolve / note.
"use strict";

const state = { alerts: new Map(), selected: null, socket: null, retryMs: 1000, map: null, layers: {} };
const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options,
    headers: { "Content-Type": "application/json", ...(options.headers || {}) } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw Object.assign(new Error(body.message || response.statusText), { status: response.status });
  }
  return response.status === 204 ? null : response.json();
}

async function start() {
  try {
    const me = await api("/v1/console/me");
    await openDesk(me);
  } catch (error) {
    showLogin();
  }
}

function showLogin() {
  $("desk").hidden = true;
  $("login").hidden = false;
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  $("login-error").textContent = "";
  try {
    await api("/v1/console/login", { method: "POST",
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }) });
    await openDesk(await api("/v1/console/me"));
  } catch (error) {
    $("login-error").textContent = error.status === 401 ? "Wrong username or password." : "Cannot log in: " + error.message;
  }
});

$("logout").addEventListener("click", async () => {
  await api("/v1/console/logout", { method: "POST" }).catch(() => null);
  if (state.socket) state.socket.onclose = null, state.socket.close();
  location.reload();
});

async function openDesk(me) {
  $("login").hidden = true;
  $("desk").hidden = false;
  $("who").textContent = `${me.username} · ${me.role === "command" ? "command centre" : "precinct " + me.precinct_id}`;
  state.map = L.map("map", { zoomControl: true }).setView([25.05, 121.55], 11);
  if (me.tile_url) L.tileLayer(me.tile_url, { maxZoom: 19 }).addTo(state.map);
  const outlines = await api("/v1/console/precincts");
  const basemap = L.geoJSON(outlines, { style: { color: "#1c2a3a", weight: 1, fillColor: "#c9d6e3", fillOpacity: 0.5 },
    onEachFeature: (feature, layer) => layer.bindTooltip(feature.properties.name) }).addTo(state.map);
  if (outlines.features.length) state.map.fitBounds(basemap.getBounds());
  connect();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/console`);
  state.socket = socket;
  socket.onopen = () => { state.retryMs = 1000; setConnection(true); };
  socket.onmessage = (message) => receive(JSON.parse(message.data));
  socket.onclose = (event) => {
    setConnection(false);
    if (event.code === 1008) { showLogin(); return; }  // the session ended: log in again
    setTimeout(connect, state.retryMs);
    state.retryMs = Math.min(state.retryMs * 2, 10000);
  };
}

function setConnection(online) {
  const badge = $("connection");
  badge.dataset.state = online ? "online" : "offline";
  badge.textContent = online ? "online" : "offline · reconnecting";
}

function receive(frame) {
  if (frame.type === "snapshot") {
    state.alerts = new Map(frame.alerts.map((alert) => [alert.alert_id, alert]));
    render();
  } else if (frame.type === "snapshot_more") {  // a large snapshot comes in parts
    for (const alert of frame.alerts) state.alerts.set(alert.alert_id, alert);
    render();
  } else if (frame.type === "alert_opened") {
    const known = state.alerts.has(frame.alert.alert_id);
    state.alerts.set(frame.alert.alert_id, frame.alert);
    if (!known) announce(frame.alert);
    render();
  } else if (frame.type === "alert_updated") {
    const previous = state.alerts.get(frame.alert.alert_id);
    const alert = frame.alert;
    if (alert.status === "resolved" || alert.status === "cancelled") state.alerts.delete(alert.alert_id);
    else state.alerts.set(alert.alert_id, alert);
    if (!previous && alert.status === "open") announce(alert);  // escalated to us
    render();
  } else if (frame.type === "alert_location") {
    const alert = state.alerts.get(frame.alert_id);
    if (!alert) return;
    alert.track.push({ lat: frame.lat, lon: frame.lon, acc: frame.acc, ts: frame.ts });
    if (state.selected === frame.alert_id) drawTrack(alert);
  } else if (frame.type === "error") {
    banner(`Refused: ${frame.message}`);
  }
}

function announce(alert) {
  banner(`${alert.duress ? "DURESS · " : ""}New SOS: ${alert.user.name} (${alert.precinct ? alert.precinct.name : "no location"})`);
  beep();
  document.title = "(!) SOS · Guardian console";
  if (!state.selected) state.selected = alert.alert_id;
}

function banner(text) {
  const element = $("banner");
  element.textContent = text;
  element.hidden = false;
  clearTimeout(banner.timer);
  banner.timer = setTimeout(() => { element.hidden = true; document.title = "Guardian console"; }, 15000);
}

function beep() {
  try {
    const audio = beep.context || (beep.context = new AudioContext());
    for (const [delay, pitch] of [[0, 880], [0.25, 660], [0.5, 880]]) {
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = pitch;
      gain.gain.value = 0.2;
      tone.connect(gain).connect(audio.destination);
      tone.start(audio.currentTime + delay);
      tone.stop(audio.currentTime + delay + 0.2);
    }
  } catch (error) { /* no audio device: the banner still shows */ }
}

function ordered() {
  // Unacknowledged first, then newest first.
  return [...state.alerts.values()].sort((a, b) =>
    (a.status === "open" ? 0 : 1) - (b.status === "open" ? 0 : 1) || b.opened_at.localeCompare(a.opened_at));
}

function render() {
  const queue = $("queue");
  queue.replaceChildren();
  const alerts = ordered();
  $("count").textContent = alerts.length;
  if (state.selected && !state.alerts.has(state.selected)) state.selected = alerts.length ? alerts[0].alert_id : null;
  for (const alert of alerts) {
    const item = document.createElement("li");
    item.dataset.alertId = alert.alert_id;
    item.dataset.status = alert.status;
    item.setAttribute("aria-selected", String(alert.alert_id === state.selected));
    item.innerHTML = `${alert.duress ? '<span class="duress">DURESS</span> ' : ""}<strong></strong>
      <div class="meta"></div>`;
    item.querySelector("strong").textContent = `${alert.user.name} · ${alert.status}`;
    item.querySelector(".meta").textContent = `${alert.precinct ? alert.precinct.name : "location unknown"}` +
      `${alert.precinct && alert.precinct.out_of_area ? " (out of area)" : ""} · ${new Date(alert.opened_at).toLocaleTimeString()}` +
      `${alert.escalation_level ? " · escalated ×" + alert.escalation_level : ""}`;
    item.addEventListener("click", () => { state.selected = alert.alert_id; render(); });
    queue.append(item);
  }
  showFacts(state.selected ? state.alerts.get(state.selected) : null);
}

function showFacts(alert) {
  const facts = $("facts");
  facts.replaceChildren();
  for (const layer of Object.values(state.layers)) layer.remove();
  state.layers = {};
  if (!alert) { facts.textContent = "No open alert."; return; }
  const where = alert.location;
  facts.innerHTML = `${alert.duress ? '<p class="duress">DURESS: the user cancelled under threat. The alert goes on.</p>' : ""}
    <h3></h3><p class="who"></p><p class="where"></p><p class="trip"></p>
    <div class="actions">
      <button type="button" data-action="ack" ${alert.status !== "open" ? "disabled" : ""}>Acknowledge</button>
      <button type="button" data-action="resolve">Resolve</button>
      <button type="button" data-action="note">Add note</button>
    </div><ul class="notes"></ul>`;
  facts.querySelector("h3").textContent = `${alert.user.name} · ${alert.status}`;
  facts.querySelector(".who").textContent = `Phone ${alert.user.phone}${alert.note ? " · “" + alert.note + "”" : ""}`;
  facts.querySelector(".where").textContent = where
    ? `SOS at ${where.lat.toFixed(5)}, ${where.lon.toFixed(5)} ±${where.acc ?? "?"} m (${where.quality}) · ${alert.precinct ? alert.precinct.name : ""}`
    : "No location known yet.";
  facts.querySelector(".trip").textContent = alert.trip
    ? `Trip: ${alert.trip.kind} ${alert.trip.plate || ""} ${alert.trip.driver_name || ""}` : "";
  for (const note of alert.notes || []) {
    const item = document.createElement("li");
    item.textContent = `${note.author}: ${note.text}`;
    facts.querySelector(".notes").append(item);
  }
  facts.querySelectorAll("button").forEach((button) =>
    button.addEventListener("click", () => act(button.dataset.action, alert.alert_id)));
  drawTrack(alert);
}

function drawTrack(alert) {
  if (!state.map) return;
  for (const layer of Object.values(state.layers)) layer.remove();
  const points = alert.track.map((point) => [point.lat, point.lon]);
  if (!points.length && alert.location) points.push([alert.location.lat, alert.location.lon]);
  if (!points.length) return;
  const last = points[points.length - 1];
  state.layers.track = L.polyline(points, { color: "#d00", weight: 4 }).addTo(state.map);
  state.layers.marker = L.circleMarker(last, { radius: 9, color: alert.duress ? "#000" : "#d00", fillOpacity: 0.9 })
    .addTo(state.map);
  state.layers.marker.getElement().setAttribute("data-testid", "alert-marker");
  state.layers.marker.getElement().dataset.lat = String(last[0]);
  state.layers.marker.getElement().dataset.lon = String(last[1]);
  state.layers.track.getElement().dataset.points = String(points.length);
  if (!state.map.getBounds().contains(last)) state.map.panTo(last);
}

function act(action, alertId) {
  const frame = { type: action, alert_id: alertId };
  if (action === "resolve") {
    const outcome = prompt("Outcome (e.g. user safe, officers on scene):", "user safe");
    if (!outcome) return;
    frame.outcome = outcome;
  } else if (action === "note") {
    const text = prompt("Note:");
    if (!text) return;
    frame.text = text;
  }
  if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(frame));
  else banner("Offline: the action was not sent.");
}

start();
