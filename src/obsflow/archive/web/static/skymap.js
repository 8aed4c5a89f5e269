// The search page's sky map: the archive's HiPS (or a blank sky) under the footprints of
// the results; a click on a footprint goes to its observation's card.  Everything comes
// from the archive (Aladin Lite is vendored): no other origin is contacted.
import A from "/static/aladin-lite/aladin.js";

const box = document.getElementById("skymap");
const shapes = JSON.parse(document.getElementById("footprints-data").textContent);

function unit(ra, dec) {
  const a = ra * Math.PI / 180, d = dec * Math.PI / 180;
  return [Math.cos(d) * Math.cos(a), Math.cos(d) * Math.sin(a), Math.sin(d)];
}

// centre: the mean direction of every corner; field: twice the farthest corner, padded
function view(polygons) {
  const points = [];
  for (const polygon of polygons) for (const [ra, dec] of polygon) points.push(unit(ra, dec));
  const c = [0, 0, 0];
  for (const p of points) for (let k = 0; k < 3; k++) c[k] += p[k];
  const n = Math.sqrt(c[0] * c[0] + c[1] * c[1] + c[2] * c[2]) || 1;
  for (let k = 0; k < 3; k++) c[k] /= n;
  const ra = (Math.atan2(c[1], c[0]) * 180 / Math.PI + 360) % 360;
  const dec = Math.asin(Math.max(-1, Math.min(1, c[2]))) * 180 / Math.PI;
  let far = 0;
  for (const p of points) {
    const cos = Math.max(-1, Math.min(1, p[0] * c[0] + p[1] * c[1] + p[2] * c[2]));
    far = Math.max(far, Math.acos(cos) * 180 / Math.PI);
  }
  const aspect = Math.max(1, box.clientWidth / Math.max(1, box.clientHeight));
  return {ra, dec, fov: Math.min(180, Math.max(2.4 * far * aspect, 10 / 3600))};
}

await A.init;
const hips = box.dataset.hips === "yes";
const options = {
  survey: hips ? new URL("/hips", window.location.href).href : [],  // [] is no image: a blank sky
  hipsList: [], log: false, samp: false, projection: "TAN", showReticle: false,
  showLayersControl: false, showProjectionControl: false, showFullscreenControl: false,
  showShareControl: false, showSettingsControl: false, showSimbadPointerControl: false,
  showCooGridControl: false, showContextMenu: false, showFrame: true, showCooLocation: true,
  backgroundColor: "rgb(13, 17, 23)",
};
const aladin = A.aladin(box, options);
const overlay = A.graphicOverlay({name: "footprints", color: "#58a6ff", lineWidth: 2});
aladin.addOverlay(overlay);
for (const f of shapes) {
  const polygon = A.polygon(f.polygon, {name: f.label});
  polygon.obsId = f.obs;
  overlay.add(polygon);
}
const {ra, dec, fov} = view(shapes.map(f => f.polygon));
aladin.gotoRaDec(ra, dec);
aladin.setFoV(fov);
aladin.on("objectClicked", obj => {
  if (obj && obj.obsId) window.location.hash = "obs-" + obj.obsId;
});
window.obsflowSkyMap = {aladin, overlay};
box.dataset.ready = "yes";
