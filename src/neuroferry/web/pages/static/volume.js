/* The asset page's slice viewer: a level and a slice z chosen, the server renders it. */
(function () {
  "use strict";
  const box = document.getElementById("volume");
  const level = document.getElementById("viewer-level");
  const z = document.getElementById("viewer-z");
  const shown = document.getElementById("viewer-z-value");
  const image = document.getElementById("viewer-image");
  if (!box || !level || !z || !image) return;
  const base = box.dataset.sliceUrl;
  let timer = null;

  function show() {
    const params = new URLSearchParams({ level: level.value, z: z.value, side: "1024" });
    image.src = base + "?" + params.toString();
    if (shown) shown.textContent = z.value;
  }

  level.addEventListener("change", function () {
    const depth = Number(level.selectedOptions[0].dataset.depth || "1");
    z.max = String(depth - 1);
    z.value = String(Math.floor(depth / 2));
    show();
  });
  z.addEventListener("input", function () {
    if (shown) shown.textContent = z.value;
    clearTimeout(timer);
    timer = setTimeout(show, 120);
  });
})();
