// The selected alert's panel: its facts, notes, and acknowledge / resolve / note. The outcome and
// note are typed into inline forms, never prompt(): a modal dialog stops the page, so a new SOS
// would be neither shown nor sounded while a dispatcher types. The forms are built once and never
// re-rendered; what is typed is kept per alert while the dispatcher looks at another one.
"use strict";

const panel = (() => {
  const root = document.getElementById("panel");
  const facts = document.getElementById("facts");
  const actions = root.querySelector(".actions");
  const forms = { resolve: document.getElementById("resolve-form"), note: document.getElementById("note-form") };
  const drafts = new Map();  // alert id → { open: "resolve" | "note" | null, resolve: text, note: text }
  let alert = null;
  let send = () => false;

  const field = (action) => forms[action].elements[action === "resolve" ? "outcome" : "text"];
  const draft = (alertId) => drafts.get(alertId) || drafts.set(alertId, { open: null, resolve: "", note: "" }).get(alertId);

  function init(options) {
    send = options.send;
    actions.addEventListener("click", (event) => {
      const action = event.target.dataset && event.target.dataset.action;
      if (!alert || !action) return;
      if (action === "ack") send({ type: "ack", alert_id: alert.alert_id });
      else openForm(action);
    });
    for (const [action, form] of Object.entries(forms)) {
      form.addEventListener("submit", (event) => { event.preventDefault(); submit(action); });
      form.querySelector("[data-cancel]").addEventListener("click", () => closeForm(action));
      form.addEventListener("keydown", (event) => {
        if (event.key === "Escape") closeForm(action);
        else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(action); }
      });
      field(action).addEventListener("input", () => { if (alert) draft(alert.alert_id)[action] = field(action).value; });
    }
  }

  function openForm(action) {
    const other = action === "resolve" ? "note" : "resolve";
    keep();
    draft(alert.alert_id).open = action;
    forms[other].hidden = true;
    forms[action].hidden = false;
    field(action).focus();
  }

  function closeForm(action) {
    forms[action].hidden = true;
    if (alert) draft(alert.alert_id).open = null;
  }

  function submit(action) {
    const text = field(action).value.trim();
    if (!alert || !text) return;
    const frame = action === "resolve"
      ? { type: "resolve", alert_id: alert.alert_id, outcome: text }
      : { type: "note", alert_id: alert.alert_id, text };
    if (!send(frame)) { refuse(action, "Offline: not sent. It is kept here; send it again once online."); return; }
    forms[action].querySelector("[type=submit]").disabled = true;
    forms[action].querySelector(".form-error").textContent = "";
  }

  function refuse(action, message) {
    forms[action].querySelector(".form-error").textContent = message;
    forms[action].querySelector("[type=submit]").disabled = false;
  }

  // The server's answer to what this panel sent: `done` (action, alert_id) or an `error`.
  function settle(frame) {
    const action = frame.action;
    if (frame.type === "done" && forms[action]) {
      const saved = drafts.get(frame.alert_id);
      if (saved) { saved[action] = ""; saved.open = null; }
      if (alert && alert.alert_id === frame.alert_id) {
        field(action).value = "";
        forms[action].hidden = true;
      }
      forms[action].querySelector("[type=submit]").disabled = false;
      return true;
    }
    if (frame.type === "error") {
      const pending = Object.keys(forms).find((name) => forms[name].querySelector("[type=submit]").disabled);
      if (pending) { refuse(pending, `Refused: ${frame.message}`); return true; }
    }
    return false;
  }

  // The socket closed before the server answered: what was sent may or may not have arrived.
  function lost() {
    for (const action of Object.keys(forms)) {
      if (forms[action].querySelector("[type=submit]").disabled) {
        refuse(action, "Connection lost before the server answered: check the alert, then send again if needed.");
      }
    }
  }

  function keep() {
    if (!alert) return;
    const saved = draft(alert.alert_id);
    for (const action of Object.keys(forms)) saved[action] = field(action).value;
  }

  function show(next) {
    if (!next || !alert || next.alert_id !== alert.alert_id) switchTo(next);
    alert = next;
    if (!alert) return;
    describe(alert);
    actions.querySelector("[data-action=ack]").disabled = alert.status !== "open";
  }

  function switchTo(next) {
    keep();
    for (const action of Object.keys(forms)) {
      const saved = next ? draft(next.alert_id) : { open: null };
      field(action).value = saved[action] || "";
      forms[action].hidden = saved.open !== action;
      forms[action].querySelector("[type=submit]").disabled = false;
      forms[action].querySelector(".form-error").textContent = "";
    }
    actions.hidden = !next;
    if (!next) {
      facts.innerHTML = '<p class="empty">No open alert.</p>';
      root.querySelector(".notes").replaceChildren();
      root.querySelector(".notes-title").hidden = true;
    }
  }

  // What raised an alert other than the SOS button (`reason` in the Alert).
  const RAISED_BY = {
    overdue: "Raised automatically: the trip is overdue and the phone did not answer “are you safe?” in time.",
    duress: "Raised by the duress PIN given in answer to “are you safe?”: the phone was told all is well.",
  };

  function describe(alert) {
    const where = alert.location;
    facts.innerHTML = `${alert.duress ? '<p class="duress">DURESS: the user cancelled under threat. The alert goes on.</p>' : ""}
      <p class="reason" hidden></p><div class="trip" hidden></div><h3></h3><p class="who"></p><p class="said" hidden></p><p class="where"></p>
      <p class="fix"></p><p class="when"><span class="clock"></span> · <span class="age"></span></p>`;
    const reason = RAISED_BY[alert.reason];
    if (reason) {
      const line = facts.querySelector(".reason");
      line.hidden = false;
      line.textContent = reason;
    }
    facts.querySelector("h3").append(userText(alert.user.name), ` · ${alert.status}`);
    facts.querySelector(".who").append("Phone ", userText(alert.user.phone));
    if (alert.note) {
      const said = facts.querySelector(".said");
      said.hidden = false;
      said.append("“", userText(alert.note), "”");
    }
    facts.querySelector(".where").textContent = where
      ? `SOS at ${where.lat.toFixed(5)}, ${where.lon.toFixed(5)} ±${where.acc ?? "?"} m (${where.quality})` +
        `${alert.precinct ? " · " + alert.precinct.name : ""}`
      : "No location known yet.";
    facts.querySelector(".clock").textContent = ages.clock(alert.opened_at);
    ages.since(facts.querySelector(".age"), "opened", alert.opened_at);
    moved(alert);
    if (alert.trip) trip.describe(facts.querySelector(".trip"), alert.trip);
    const notes = (alert.notes || []).map((note) => {
      const item = document.createElement("li");
      item.append(userText(note.author), ": ", userText(note.text));
      return item;
    });
    root.querySelector(".notes").replaceChildren(...notes);
    root.querySelector(".notes-title").hidden = !notes.length;
  }

  // The newest fix of the shown alert and how old it is (the desk's one timer keeps the age
  // current); live positions update only this line, so nothing else the dispatcher reads moves.
  function moved(next) {
    if (!alert || next.alert_id !== alert.alert_id) return;
    const track = next.track || [];
    const fix = track.length ? track[track.length - 1] : next.location;
    const line = facts.querySelector(".fix");
    if (!line) return;
    if (!fix || !fix.ts) { line.replaceChildren("No fix received yet."); return; }
    const age = document.createElement("span");
    ages.since(age, "", fix.ts);
    line.replaceChildren(`Last fix ${ages.clock(fix.ts)} ±${fix.acc ?? "?"} m · `, age);
  }

  function forget(alertId) { drafts.delete(alertId); }

  function reset() {
    show(null);
    drafts.clear();
  }

  return { init, show, moved, settle, lost, forget, reset };
})();
