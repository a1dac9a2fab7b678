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
    return `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, "0")} min`;
  }

  return { since, refresh };
})();
