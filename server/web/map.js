// The desk's map: the precinct outlines as basemap (no tiles needed) and the selected alert's
// layers. Selecting an alert flies to it; live positions of the same alert only move its layers,
// so a dispatcher who panned away is not dragged back unless the user leaves the view.
"use strict";

const deskMap = (() => {
  // Close enough to follow a walk, far enough to keep a precinct edge or a street in sight.
  const FLY = { padding: [48, 48], maxZoom: 16, duration: 0.8 };
  let map = null;
  let layers = [];
  let shownId = null;
  let flightEndsMs = 0;  // a live position during a flight must not cut it short with a pan
  let framed = false;  // the view is still the one fitted to the shown alert: no hand has moved it since
  let backdrop = null;  // the open desk's basemap (and tiles); null while no desk is open

  function points(alert) {
    const track = (alert.track || []).map((point) => [point.lat, point.lon]);
    if (!track.length && alert.location) track.push([alert.location.lat, alert.location.lon]);
    return track;
  }

  function newest(alert) {
    const track = alert.track || [];
    return track.length ? track[track.length - 1] : alert.location;
  }

  // A trip's parts, when the Alert has a trip: [lat, lon] pairs (GeoJSON's are lon, lat), only the
  // real coordinates among them, so one bad point draws nothing wrong and breaks nothing.
  function latLngs(pairs) {
    return pairs.filter(([lat, lon]) => Number.isFinite(lat) && Number.isFinite(lon)
      && Math.abs(lat) <= 90 && Math.abs(lon) <= 180);
  }

  function plannedRoute(trip) {
    const route = trip && trip.planned_route;
    if (!route || route.type !== "LineString" || !Array.isArray(route.coordinates)) return [];
    return latLngs(route.coordinates.map((position) => (Array.isArray(position) ? [position[1], position[0]] : [])));
  }

  function tripTrack(trip) {
    if (!trip || !Array.isArray(trip.track)) return [];
    return latLngs(trip.track.map((point) => (point ? [point.lat, point.lon] : [])));
  }

  function destination(trip) {
    const place = trip && trip.destination;
    return place ? latLngs([[place.lat, place.lon]])[0] || null : null;
  }

  // Each builder draws one part of an alert, or nothing, bottom layer first: the trip's planned
  // route and its track since check-in under the alert's own live track, the user on top.
  const builders = [
    function route(alert) {
      const line = plannedRoute(alert.trip);
      if (line.length < 2) return null;
      const layer = L.polyline(line, { color: "#1c5fd6", weight: 4, opacity: 0.9, dashArray: "10 8" });
      return tagged(layer, "trip-route", { points: String(line.length) });
    },
    function ride(alert) {
      const line = tripTrack(alert.trip);
      if (line.length < 2) return null;
      const layer = L.polyline(line, { color: "#8a1c1c", weight: 3, opacity: 0.6 });
      return tagged(layer, "trip-track", { points: String(line.length) });
    },
    function track(alert, line) {
      if (line.length < 2) return null;
      const layer = L.polyline(line, { color: "#d00", weight: 4, opacity: 0.85 });
      return tagged(layer, "alert-track", { points: String(line.length) });
    },
    function accuracy(alert, line) {
      const fix = newest(alert);
      if (!line.length || !fix || !(fix.acc > 0)) return null;
      const layer = L.circle(line[line.length - 1], { radius: fix.acc, color: "#d00", weight: 1, fillOpacity: 0.15 });
      return tagged(layer, "alert-accuracy", { radius: String(fix.acc) });
    },
    function goal(alert) {
      const place = destination(alert.trip);
      if (!place) return null;
      // A square flag, not a dot: it must never be taken for where the user is.
      const layer = L.marker(place, { keyboard: false, icon: L.divIcon({ className: "trip-destination",
        html: "<span>B</span>", iconSize: [24, 24], iconAnchor: [12, 12] }) });
      layer.bindTooltip("Destination", { direction: "top", offset: [0, -12] });
      return tagged(layer, "trip-destination", { lat: String(place[0]), lon: String(place[1]) });
    },
    function marker(alert, line) {
      if (!line.length) return null;
      const [lat, lon] = line[line.length - 1];
      const layer = L.circleMarker([lat, lon], { radius: 9, weight: 3, color: alert.duress ? "#000" : "#fff",
        fillColor: alert.duress ? "#ff0" : "#d00", fillOpacity: 1 });
      layer.bindTooltip(userText(alert.user.name),  // a string would be HTML
        { direction: "top", offset: [0, -10] });
      return tagged(layer, "alert-marker", { lat: String(lat), lon: String(lon) });
    },
  ];

  function tagged(layer, testid, data) {
    layer.on("add", () => {
      const element = layer.getElement();
      element.setAttribute("data-testid", testid);
      Object.assign(element.dataset, data);
    });
    return layer;
  }

  // One Leaflet map for the page's life, emptied when the desk closes: a removed map still runs the
  // timer of a zoom animation under way, which then fails on the map it lost (a page error).
  function create() {
    // Quarter zoom steps: fitting an alert's parts to whole zoom levels could leave them in half the map.
    map = L.map("map", { zoomControl: true, maxZoom: 19, zoomSnap: 0.25 });
    L.control.scale({ imperial: false }).addTo(map);
    // A hand on the map (drag, wheel, a zoom button, keys) makes the view the dispatcher's own.
    for (const gesture of ["pointerdown", "wheel", "keydown"]) {
      map.getContainer().addEventListener(gesture, () => { framed = false; }, { passive: true });
    }
    // The desk's columns and the window change size; Leaflet must know, or it draws off-centre. A
    // view still fitted to the selected alert is fitted again, or a narrower window cuts it off.
    new ResizeObserver(() => {
      map.invalidateSize();
      if (backdrop && framed && layers.length) map.fitBounds(extent(), { ...FLY, animate: false });
    }).observe(map.getContainer());
  }

  function open(me, outlines) {
    close();
    if (!map) create();
    const basemap = L.geoJSON(outlines, {
      style: { color: "#1c2a3a", weight: 1, fillColor: "#c9d6e3", fillOpacity: 0.5 },
      onEachFeature: (feature, layer) => layer.bindTooltip(userText(feature.properties.name)) });
    backdrop = [basemap];
    if (me.tile_url) backdrop.unshift(L.tileLayer(me.tile_url, { maxZoom: 19 }));
    for (const layer of backdrop) layer.addTo(map);
    map.invalidateSize();  // the desk was hidden until now: the map's size is new
    if (outlines.features.length) map.fitBounds(basemap.getBounds(), { animate: false });
    else map.setView([25.05, 121.55], 11, { animate: false });
  }

  function close() {
    if (!map) return;
    map.stop();
    clear();
    for (const layer of backdrop || []) layer.remove();
    backdrop = null;
    shownId = null;
    framed = false;
    delete map.getContainer().dataset.settled;
  }

  function clear() {
    for (const layer of layers) layer.remove();
    layers = [];
  }

  function show(alert) {
    if (!backdrop) return;
    clear();
    const container = map.getContainer();
    if (!alert) { shownId = null; framed = false; delete container.dataset.settled; return; }
    const line = points(alert);
    layers = builders.map((build) => build(alert, line)).filter(Boolean);
    for (const layer of layers) layer.addTo(map);
    if (!layers.length) { shownId = alert.alert_id; container.dataset.settled = alert.alert_id; return; }
    if (alert.alert_id !== shownId) {
      shownId = alert.alert_id;
      fly(alert.alert_id);
    } else if (line.length && Date.now() > flightEndsMs && !map.getBounds().contains(line[line.length - 1])) {
      map.panTo(line[line.length - 1]);
    }
  }

  // Everything drawn for the alert: the user, the accuracy, the tracks, the planned route and the destination.
  function extent() {
    const bounds = L.latLngBounds([]);
    for (const layer of layers) bounds.extend(layer.getBounds ? layer.getBounds() : layer.getLatLng());
    return bounds;
  }

  function fly(alertId) {
    const container = map.getContainer();
    delete container.dataset.settled;
    map.once("moveend", () => { if (shownId === alertId) container.dataset.settled = alertId; });
    flightEndsMs = Date.now() + FLY.duration * 1000 + 250;
    framed = true;
    map.flyToBounds(extent(), FLY);
  }

  return { open, close, show };
})();
