// The deep-zoom viewer of a colour image's page: OpenSeadragon on the archive's own
// Deep Zoom pyramid (/api/products/<id>/deepzoom.dzi and its tiles), nothing from elsewhere.
// The element's data attributes say what happened, for people and tests alike:
// data-state = "open" | "failed", data-tiles = tiles drawn so far.
document.addEventListener("DOMContentLoaded", function () {
  var element = document.getElementById("deepzoom");
  if (!element || typeof OpenSeadragon === "undefined") {
    return;
  }
  var viewer = OpenSeadragon({
    element: element,
    tileSources: element.dataset.dzi,
    showNavigationControl: false,
    visibilityRatio: 0.5,
    maxZoomPixelRatio: 4,
    crossOriginPolicy: false
  });
  element.dataset.tiles = "0";
  viewer.addHandler("open", function () { element.dataset.state = "open"; });
  viewer.addHandler("open-failed", function () { element.dataset.state = "failed"; });
  viewer.addHandler("tile-loaded", function () {
    element.dataset.tiles = String(Number(element.dataset.tiles) + 1);
  });
});
