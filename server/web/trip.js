// An alert's trip as the police read it: for a taxi the plate and the driver first and large, then
// the kind, when it started, the vehicle and what the map shows of it. All of it came from the
// phone, so all of it goes on the page as text (userText), never as HTML.
"use strict";

const trip = (() => {
  const KINDS = { taxi: "Taxi ride", hike: "Hike", walk: "Walk" };
  const STARTED = { taxi: "checked in", hike: "set out", walk: "set out" };

  function part(tag, className, ...children) {
    const element = document.createElement(tag);
    element.className = className;
    element.append(...children);
    return element;
  }

  const kindOf = (trip) => KINDS[trip.kind] || userText(trip.kind || "Trip");

  function vehicle(trip) {
    const known = [trip.vehicle && trip.vehicle.make, trip.vehicle && trip.vehicle.colour].filter(Boolean);
    if (!known.length) return null;
    return part("p", "vehicle", "Vehicle ", ...known.flatMap((text, index) => (index ? [", ", userText(text)] : [userText(text)])));
  }

  function started(trip) {
    const line = part("p", "kind", kindOf(trip));
    if (trip.status) line.append(" · ", part("span", "status", userText(trip.status)));
    if (trip.started_at) {
      const age = document.createElement("span");
      ages.since(age, "", trip.started_at);
      line.append(` · ${STARTED[trip.kind] || "started"} ${ages.clock(trip.started_at)} (`, age, ")");
    }
    return line;
  }

  // Says what the map draws of the trip, so the dashed line and the square are not guessed at.
  function legend(trip) {
    const shown = [];
    if (trip.planned_route) shown.push("planned route dashed blue");
    if (trip.destination) shown.push("destination the blue square B");
    if (trip.track && trip.track.length > 1) shown.push("the trip so far in dark red");
    return shown.length ? part("p", "legend", `On the map: ${shown.join(", ")}.`) : null;
  }

  // The trip's section of the panel, in `element` (emptied first).
  function describe(element, trip) {
    const parts = [];
    if (trip.kind === "taxi" && trip.plate) parts.push(part("p", "plate", userText(trip.plate)));
    if (trip.driver_name) parts.push(part("p", "driver", "Driver ", userText(trip.driver_name)));
    parts.push(started(trip), vehicle(trip), legend(trip));
    element.replaceChildren(...parts.filter(Boolean));
    element.dataset.kind = KINDS[trip.kind] ? trip.kind : "other";
    element.hidden = false;
  }

  // One line for the queue: the kind and, for a taxi, the plate.
  function tag(trip) {
    const line = part("div", "trip", kindOf(trip));
    if (trip.kind === "taxi" && trip.plate) line.append(" ", userText(trip.plate));
    return line;
  }

  return { describe, tag };
})();
