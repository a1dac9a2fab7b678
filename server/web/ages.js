// How long ago things happened, as the page shows it: an element holds its instant (`data-since`)
// and a label, and the desk's one timer rewrites them all, so no row or line keeps a timer of its own.
"use strict";

const ages = (() => {
  function since(element, label, instant) {
    element.dataset.since = instant || "";
    element.dataset.label = label;
    write(element, Date.now());
  }

  function refresh() {
    const nowMs = Date.now();
    for (const element of document.querySelectorAll("[data-since]")) write(element, nowMs);
  }

  function write(element, nowMs) {
    const thenMs = Date.parse(element.dataset.since);
    const text = Number.isNaN(thenMs) ? "at an unknown time" : `${format(nowMs - thenMs)} ago`;
    element.textContent = element.dataset.label ? `${element.dataset.label} ${text}` : text;
  }

  // A clock ahead of ours (a phone's) reads as just now, never as a negative age.
  function format(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
    if (s < 2 * 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, "0")} min`;
    return `${Math.floor(s / 86400)} d ${String(Math.floor(s / 3600) % 24).padStart(2, "0")} h`;
  }

  // The wall-clock time of an instant, with its date when that is not today: a time alone would
  // put yesterday's check-in or SOS a few hours ago.
  function clock(instant) {
    const moment = new Date(instant);
    return moment.toDateString() === new Date().toDateString() ? moment.toLocaleTimeString() : moment.toLocaleString();
  }

  return { since, refresh, clock };
})();
