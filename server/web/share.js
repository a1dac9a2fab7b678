// The watcher page: one trip, live. The socket sends the trip first (with its track so far), then
// its moves and status; a close with 1008 means the link is over (expired or revoked) and the page
// goes dead for good; any other close is a lost network, retried with a growing back-off.
// Everything the user typed (plate, driver, vehicle) goes on the page as text, never as HTML.
"use strict";

(() => {
  const POLICY_CLOSE = 1008;
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const STALE_S = 60;  // a live trip with no fix for this long is shown as such
  const STATUS = {
    active: "On the way",
    overdue: "Overdue: not back in time",
    off_route: "Off the planned route",
    arrived: "Arrived",
    ended: "Trip ended",
    alert: "SOS: emergency alert raised",
  };
  const KIND = { taxi: "Taxi ride", hike: "Hike", walk: "Walk home" };
  const FINAL = ["arrived", "ended"];

  const token = decodeURIComponent(location.pathname.split("/").pop());
  const $ = (id) => document.getElementById(id);
  const root = $("watch");
  let socket = null;
  let retryMs = RETRY_FIRST_MS;
  let dead = false;
  let trip = null;
  let updatedMs = null;
  let fitted = false;
  let userMoved = false;  // once the watcher pans, the page no longer refits the view by itself

  const map = L.map("map", { zoomControl: true, maxZoom: 19 }).setView([25.05, 121.55], 12);
  L.control.scale({ imperial: false }).addTo(map);
  map.on("dragstart", () => { userMoved = true; });
  // The window changes size (a phone turned): Leaflet must know, and the trip stays in view.
  new ResizeObserver(() => { map.invalidateSize(); if (!userMoved) fit(); }).observe(map.getContainer());
  const planned = L.polyline([], { color: "#1c5fd6", weight: 3, opacity: 0.8, dashArray: "8 8" }).addTo(map);
  const track = L.polyline([], { color: "#d00", weight: 4, opacity: 0.85 }).addTo(map);
  const accuracy = L.circle([0, 0], { radius: 1, color: "#d00", weight: 1, fillOpacity: 0.12 });
  const here = L.circleMarker([0, 0], { radius: 9, weight: 3, color: "#fff", fillColor: "#d00", fillOpacity: 1 });
  const destination = L.marker([0, 0], { icon: L.divIcon({ className: "destination-icon", iconSize: [16, 16] }),
    keyboard: false });
  const start = L.circleMarker([0, 0], { radius: 6, weight: 3, color: "#333", fillColor: "#fff", fillOpacity: 1 });
  // Fixed labels of ours: a map without tiles needs them to be read at a glance.
  here.bindTooltip("Last position", { permanent: true, direction: "auto", offset: [10, 0] });
  destination.bindTooltip("Destination", { permanent: true, direction: "auto", offset: [10, 0] });
  start.bindTooltip("Start", { direction: "left", offset: [-8, 0] });

  function text(id, value) {
    $(id).replaceChildren(userText(value));
  }

  function clock(iso) {
    if (!iso) return "–";
    const at = new Date(iso);
    const sameDay = at.toDateString() === new Date().toDateString();
    const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return sameDay ? time : `${at.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
  }

  function age(seconds) {
    if (seconds < 5) return "just now";
    if (seconds < 90) return `${Math.round(seconds)} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} days ago`;
  }

  function tick() {
    if (updatedMs == null) return;
    const seconds = Math.max(0, (Date.now() - updatedMs) / 1000);
    const element = $("age");
    element.textContent = `(${age(seconds)})`;
    element.dataset.stale = String(!dead && trip && !FINAL.includes(trip.status) && seconds > STALE_S);
  }

  function touched(iso) {
    const ms = Date.parse(iso);
    if (!Number.isNaN(ms) && (updatedMs == null || ms > updatedMs)) updatedMs = ms;
    $("updated").textContent = clock(new Date(updatedMs).toISOString());
    tick();
  }

  function showStatus(status) {
    trip.status = status;
    const element = $("status");
    element.dataset.status = status;
    element.textContent = STATUS[status] || status;
    root.dataset.status = status;
  }

  function describe(vehicle) {
    if (!vehicle || typeof vehicle !== "object") return "";
    return [vehicle.colour, vehicle.make].filter((part) => typeof part === "string" && part).join(" ");
  }

  function showTrip(frame) {
    trip = frame;
    const taxi = frame.kind === "taxi";
    $("ride").hidden = !taxi;
    $("outing").hidden = taxi;
    if (taxi) {
      text("plate", frame.plate || "");
      text("driver", frame.driver_name ? `Driver: ${frame.driver_name}` : "");
      text("vehicle", describe(frame.vehicle));
    } else {
      text("kind", KIND[frame.kind] || frame.kind);
    }
    const end = frame.destination ? `To ${frame.destination.lat.toFixed(5)}, ${frame.destination.lon.toFixed(5)}` : "";
    if (!taxi) text("destination", end);
    $("due-label").textContent = frame.kind === "hike" ? "Expected back" : "Expected arrival";
    $("due").textContent = clock(frame.expected_return || frame.eta);
    $("started").textContent = clock(frame.started_at);
    $("expires").textContent = clock(frame.expires_at);
    showStatus(frame.status);
    const route = frame.planned_route && Array.isArray(frame.planned_route.coordinates)
      ? frame.planned_route.coordinates.map(([lon, lat]) => [lat, lon]) : [];
    planned.setLatLngs(route);
    if (frame.destination) destination.setLatLng([frame.destination.lat, frame.destination.lon]).addTo(map);
    else destination.remove();
    track.setLatLngs(frame.track.map((fix) => [fix.lat, fix.lon]));
    const first = frame.track[0];
    if (first) start.setLatLng([first.lat, first.lon]).addTo(map);
    const last = frame.track[frame.track.length - 1];
    if (last) place(last);
    updatedMs = null;
    touched(frame.updated_at);
    if (!fitted) fit();
    root.dataset.points = String(frame.track.length);
  }

  function fit() {
    let bounds = null;
    for (const layer of [track, planned]) {
      if (layer.getLatLngs().length) bounds = bounds ? bounds.extend(layer.getBounds()) : layer.getBounds();
    }
    if (trip && trip.destination) {
      const point = L.latLng(trip.destination.lat, trip.destination.lon);
      bounds = bounds ? bounds.extend(point) : L.latLngBounds(point, point);
    }
    if (!bounds) return;
    fitted = true;
    map.fitBounds(bounds, { padding: [48, 48], maxZoom: 16, animate: false });
  }

  function place(fix) {
    here.setLatLng([fix.lat, fix.lon]).addTo(map);
    if (fix.acc > 0) accuracy.setLatLng([fix.lat, fix.lon]).setRadius(fix.acc).addTo(map);
    else accuracy.remove();
    root.dataset.lat = String(fix.lat);
    root.dataset.lon = String(fix.lon);
  }

  function moved(fix) {
    if (!track.getLatLngs().length) start.setLatLng([fix.lat, fix.lon]).addTo(map);
    track.addLatLng([fix.lat, fix.lon]);
    place(fix);
    touched(fix.ts);
    root.dataset.points = String(track.getLatLngs().length);
    if (!fitted) fit();
    else if (!map.getBounds().contains([fix.lat, fix.lon])) map.panTo([fix.lat, fix.lon]);
  }

  function connection(state, label) {
    const element = $("connection");
    element.dataset.state = state;
    element.textContent = label;
  }

  function die(reason) {
    dead = true;
    root.dataset.state = "dead";
    if (reason && reason.includes("revoked")) $("dead-reason").textContent = "The traveller stopped sharing this trip.";
    $("dead").hidden = false;
    connection("offline", "Link expired");
    tick();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/v1/share/${encodeURIComponent(token)}`);
    socket.onmessage = (message) => {
      const frame = JSON.parse(message.data);
      if (frame.type === "trip") {
        retryMs = RETRY_FIRST_MS;
        root.dataset.state = "live";
        connection("online", "Live");
        showTrip(frame);
      } else if (frame.type === "location" && trip) {
        moved(frame);
      } else if (frame.type === "trip_status" && trip) {
        showStatus(frame.status);
        touched(new Date().toISOString());
      }
    };
    socket.onclose = (event) => {
      socket = null;
      if (event.code === POLICY_CLOSE) { die(event.reason); return; }
      if (dead) return;
      root.dataset.state = "reconnecting";
      const waitMs = retryMs * (0.75 + Math.random() / 2);
      connection("offline", `Connection lost: retrying in ${Math.ceil(waitMs / 1000)} s`);
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
      setTimeout(connect, waitMs);
    };
  }

  setInterval(tick, 1000);
  connect();
})();
