// The dispatcher console: login, the socket, the queue of open alerts with their live age, and
// the announcement of a new SOS. The map (map.js) and the selected alert's panel (panel.js) are
// told what is selected. Logging out, or a session that ends, tears the desk down completely, so
// logging in again builds it afresh.
"use strict";

const state = { alerts: new Map(), selected: null, socket: null, retryMs: 1000, retryTimer: null, ageTimer: null,
  desk: 0 };  // counts desks opened and closed: a desk closed while it was still loading stops there
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
  let me;
  try {
    me = await api("/v1/console/me");
  } catch (error) {
    showLogin("");
    return;
  }
  await openDesk(me);
}

function showLogin(message) {
  closeDesk();
  $("desk").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("login-form").elements.password.value = "";
  $("login-form").elements.username.focus();
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
  closeDesk();
  await api("/v1/console/logout", { method: "POST" }).catch(() => null);
  showLogin("Logged out.");
});

for (const gesture of ["pointerdown", "keydown"]) document.addEventListener(gesture, unmute, true);

$("banner").addEventListener("click", () => {
  const alertId = $("banner").dataset.alertId;
  if (alertId && state.alerts.has(alertId)) select(alertId);
});

async function openDesk(me) {
  if (me.role === "officer") { showLogin("Officers use the app, not the console."); return; }
  closeDesk();
  $("login").hidden = true;
  $("desk").hidden = false;
  $("who").textContent = `${me.username} · ${me.role === "command" ? "command centre" : "precinct " + me.precinct_id}`;
  panel.reset();
  render();
  const desk = state.desk;
  const outlines = await api("/v1/console/precincts");
  if (desk !== state.desk) return;
  deskMap.open(me, outlines);
  state.ageTimer = setInterval(ages.refresh, 1000);  // one timer for every age on the desk
  showSound();
  connect();
}

function closeDesk() {
  state.desk += 1;
  if (state.socket) state.socket.close();
  state.socket = null;
  clearTimeout(state.retryTimer);
  clearInterval(state.ageTimer);
  state.alerts = new Map();
  state.selected = null;
  state.retryMs = 1000;
  hideBanner();
  deskMap.close();
  setConnection(false);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/console`);
  state.socket = socket;
  socket.onopen = () => { state.retryMs = 1000; setConnection(true); };
  socket.onmessage = (message) => receive(JSON.parse(message.data));
  socket.onclose = async (event) => {
    if (state.socket !== socket) return;  // closed by us: logging out or starting over
    setConnection(false);
    panel.lost();
    // A refused upgrade (no session any more) reaches a browser as 1006, not 1008: ask the server.
    const ended = event.code === 1008 || !(await sessionAlive());
    if (state.socket !== socket) return;
    if (ended) { showLogin("Your session ended: log in again."); return; }
    state.retryTimer = setTimeout(connect, state.retryMs);
    state.retryMs = Math.min(state.retryMs * 2, 10000);
  };
}

async function sessionAlive() {
  try {
    await api("/v1/console/me");
    return true;
  } catch (error) {
    return error.status !== 401;  // no answer at all: the server is away, keep reconnecting
  }
}

function send(frame) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return false;
  state.socket.send(JSON.stringify(frame));
  return true;
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
    if (alert.status === "resolved" || alert.status === "cancelled") {
      state.alerts.delete(alert.alert_id);
      panel.forget(alert.alert_id);
    } else {
      state.alerts.set(alert.alert_id, alert);
    }
    if (!previous && alert.status === "open") announce(alert);  // escalated to us
    render();
  } else if (frame.type === "alert_location") {
    const alert = state.alerts.get(frame.alert_id);
    if (!alert) return;
    alert.track.push({ lat: frame.lat, lon: frame.lon, acc: frame.acc, ts: frame.ts });
    if (state.selected === frame.alert_id) { deskMap.show(alert); panel.moved(alert); }
  } else if (frame.type === "done" || frame.type === "error") {
    if (!panel.settle(frame) && frame.type === "error") banner(`Refused: ${frame.message}`);
  }
}

function announce(alert) {
  banner([`${alert.duress ? "DURESS · " : ""}New SOS: `, userText(alert.user.name),
    ` (${alert.precinct ? alert.precinct.name : "no location"})`], alert.alert_id);
  beep();
  document.title = "(!) SOS · Guardian console";
  if (!state.selected) state.selected = alert.alert_id;
}

function banner(parts, alertId) {
  const element = $("banner");
  element.replaceChildren(...[].concat(parts));
  element.dataset.alertId = alertId || "";
  element.title = alertId ? "Show this alert" : "";
  element.hidden = false;
  clearTimeout(banner.timer);
  banner.timer = setTimeout(hideBanner, 15000);
}

function hideBanner() {
  clearTimeout(banner.timer);
  $("banner").hidden = true;
  document.title = "Guardian console";
}

// A browser starts audio only after the page had a click or a key press: a desk opened by a reload
// with a live session would sound no SOS. The header says so until the dispatcher gives one.
function sound() {
  try {
    return sound.context || (sound.context = Object.assign(new AudioContext(), { onstatechange: showSound }));
  } catch (error) {
    return null;  // no audio device: the banner still shows
  }
}

function unmute() {
  const audio = sound();
  if (audio && audio.state === "suspended") audio.resume().catch(() => null);
}

function showSound() {
  const audio = sound();
  $("sound").hidden = !audio || audio.state === "running";
}

function beep() {
  const audio = sound();
  if (!audio) return;
  for (const [delay, pitch] of [[0, 880], [0.25, 660], [0.5, 880]]) {
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.frequency.value = pitch;
    gain.gain.value = 0.2;
    tone.connect(gain).connect(audio.destination);
    tone.start(audio.currentTime + delay);
    tone.stop(audio.currentTime + delay + 0.2);
  }
}

function ordered() {
  // Unacknowledged first, then newest first.
  return [...state.alerts.values()].sort((a, b) =>
    (a.status === "open" ? 0 : 1) - (b.status === "open" ? 0 : 1) || b.opened_at.localeCompare(a.opened_at));
}

function select(alertId) {
  state.selected = alertId;
  render();
}

function render() {
  const queue = $("queue");
  const focused = document.activeElement && document.activeElement.closest("#queue li");
  const refocus = focused ? focused.dataset.alertId : null;
  const alerts = ordered();
  $("count").textContent = alerts.length;
  if (!state.alerts.has(state.selected)) state.selected = alerts.length ? alerts[0].alert_id : null;
  queue.replaceChildren(...alerts.map(queued));
  if (refocus) queue.querySelector(`li[data-alert-id="${refocus}"]`)?.focus();
  const selected = state.alerts.get(state.selected) || null;
  panel.show(selected);
  deskMap.show(selected);
}

function queued(alert) {
  const item = document.createElement("li");
  item.dataset.alertId = alert.alert_id;
  item.dataset.status = alert.status;
  item.tabIndex = 0;
  item.setAttribute("aria-selected", String(alert.alert_id === state.selected));
  item.innerHTML = `<div class="title">${alert.duress ? '<span class="duress">DURESS</span> ' : ""}<strong></strong>
    <span class="age"></span></div><div class="meta"></div>`;
  item.querySelector("strong").append(userText(alert.user.name));
  ages.since(item.querySelector(".age"), "opened", alert.opened_at);
  item.querySelector(".meta").textContent = `${alert.status} · ${alert.precinct ? alert.precinct.name : "location unknown"}` +
    `${alert.precinct && alert.precinct.out_of_area ? " (out of area)" : ""} · ${ages.clock(alert.opened_at)}` +
    `${alert.escalation_level ? " · escalated ×" + alert.escalation_level : ""}` +
    `${alert.repeats ? " · " + alert.repeats + " more SOS" : ""}`;
  if (alert.trip) item.append(trip.tag(alert.trip));
  item.addEventListener("click", () => select(alert.alert_id));
  item.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); select(alert.alert_id); }
  });
  return item;
}

panel.init({ send });
start();
