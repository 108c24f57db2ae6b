// The map page (headend/web/pages/map.py): receivers as coloured dots, villages as outlines
// or names, drawn by Leaflet (served from /static, no CDN) from the JSON the page embeds.
// Without a tile URL there are no tiles: the dots and villages sit on a plain background.
"use strict";

const STATE_COLOURS = {online: "#1b7f3b", fault: "#b77400", offline: "#c0211a"};

function escapeText(text) {
  const div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

function drawMap(element, data) {
  const map = L.map(element, {attributionControl: Boolean(data.tiles), zoomSnap: 0.25});
  if (data.tiles) {
    L.tileLayer(data.tiles, {maxZoom: 19, attribution: data.attribution || ""}).addTo(map);
  }
  const bounds = [];
  for (const village of data.villages) {
    if (village.polygon) {
      L.polygon(village.polygon, {color: "#31465e", weight: 2, fillColor: "#9db6d3",
                                  fillOpacity: 0.18}).addTo(map);
      village.polygon.forEach((p) => bounds.push(p));
    }
    L.marker(village.centre, {
      interactive: false, keyboard: false,
      icon: L.divIcon({className: "village-label", html: "<span>" + escapeText(village.name) +
                       "</span>", iconSize: [0, 0]}),
    }).addTo(map);
  }
  for (const rx of data.receivers) {
    const marker = L.circleMarker([rx.lat, rx.lon], {
      radius: 9, weight: 2, color: "#ffffff", fillColor: STATE_COLOURS[rx.state] || "#555",
      fillOpacity: 0.95,
    }).addTo(map);
    marker.bindTooltip(escapeText(rx.name) + " · " + escapeText(rx.label));
    marker.bindPopup("<strong>" + escapeText(rx.name) + "</strong> <small>" +
                     escapeText(rx.id) + "</small><br>" + escapeText(rx.label) +
                     (rx.reason ? " · " + escapeText(rx.reason) : "") +
                     (rx.zone ? "<br>" + escapeText(data.labels.zone) + ": " +
                      escapeText(rx.zone) : "") +
                     '<br><a href="' + encodeURI(rx.url) + '">' +
                     escapeText(data.labels.open) + "</a>");
    const dot = marker.getElement();
    if (dot) dot.setAttribute("data-receiver", rx.id);
    bounds.push([rx.lat, rx.lon]);
  }
  if (bounds.length === 1) map.setView(bounds[0], 16);
  else map.fitBounds(bounds, {padding: [30, 30], maxZoom: 17});
  element.dataset.drawn = String(data.receivers.length);
  return map;
}

document.addEventListener("DOMContentLoaded", () => {
  const element = document.querySelector("[data-map]");
  const source = document.getElementById("map-data");
  if (!element || !source || typeof L === "undefined") return;
  drawMap(element, JSON.parse(source.textContent));
});
