// Shop The Look storefront: POST /recommend with the photo, draw a box per item and person, show a
// row of products per item; a product asks POST /similar for more like it and refills its row.

const CATEGORY_NAMES = {
  topwear: "Topwear",
  bottomwear: "Bottomwear",
  footwear: "Footwear",
  dress: "Dress",
  outerwear: "Outerwear",
  accessories: "Accessories",
};
const ALL_CATEGORIES = Object.keys(CATEGORY_NAMES);
const ERROR_TITLES = {
  400: "This file could not be read as a photo",
  404: "Not found",
  413: "This photo is too large",
  422: "An option is not valid",
  503: "The service is unavailable right now",
};
const DEGRADED_NOTES = {
  detector: "Item detection failed: the whole photo was searched as one item.",
  gender: "Gender detection failed: products of every gender are shown.",
  index: "The catalog search failed for some items: their rows may be empty.",
  "index-model": "The catalog was indexed by another embedding model than this photo: matches may be poor until it is ingested again.",
};
const COLOURS = {
  Black: "#111", White: "#fff", Grey: "#9ca3af", Blue: "#2563eb", Navy: "#1e3a8a", Red: "#dc2626",
  Green: "#16a34a", Yellow: "#facc15", Orange: "#f97316", Pink: "#f472b6", Purple: "#9333ea",
  Brown: "#92400e", Beige: "#e7d8b1", Olive: "#6b7c2b", Maroon: "#7f1d1d", Teal: "#0d9488",
  Silver: "#d1d5db", Gold: "#d4a017", Cream: "#fdf6e3", Khaki: "#c3b091", Multi: "conic-gradient(red, yellow, lime, aqua, blue, magenta, red)",
};

const $ = (selector, root = document) => root.querySelector(selector);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.setAttribute("style", value);
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};

const ui = {
  form: $("#look-form"),
  dropzone: $("#dropzone"),
  file: $("#file"),
  cameraFile: $("#camera-file"),
  pick: $("#pick"),
  camera: $("#camera"),
  fileName: $("#file-name"),
  gender: $("#gender"),
  k: $("#k"),
  colour: $("#colour"),
  categories: $("#categories"),
  submit: $("#submit"),
  status: $("#status"),
  error: $("#error"),
  results: $("#results"),
  placeholder: $("#placeholder"),
  degraded: $("#degraded"),
  look: $("#look"),
  frame: $("#photo-frame"),
  photo: $("#photo"),
  caption: $("#photo-caption"),
  overlay: $("#overlay"),
  people: $("#people"),
  items: $("#items"),
  rows: $("#rows"),
  rowTemplate: $("#row-template"),
};

const state = { file: null, photoUrl: null, answer: null, request: null, rows: [], newPhoto: false };

// --- talking to the API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, error, detail) {
    super(describeDetail(detail) || error || `HTTP ${status}`);
    this.status = status;
    this.title = ERROR_TITLES[status] || `The server answered ${status}`;
  }
}

function describeDetail(detail) {
  if (Array.isArray(detail)) {
    return detail.map((d) => [d.loc && d.loc.join("."), d.msg].filter(Boolean).join(": ")).join("; ");
  }
  return detail ? String(detail) : "";
}

async function callApi(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw Object.assign(new Error(`Could not reach the server (${exc.message}).`), { title: "Network error" });
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body && body.error, body && body.detail);
  return body;
}

function recommendUrl() {
  const params = new URLSearchParams({ k: String(currentK()), gender: ui.gender.value, colour: ui.colour.value });
  const chosen = chosenCategories();
  if (chosen.length < ALL_CATEGORIES.length) params.set("categories", chosen.join(","));
  return `/recommend?${params}`;
}

function currentK() {
  const k = Math.round(Number(ui.k.value));
  return Number.isFinite(k) ? Math.min(50, Math.max(1, k)) : 6;
}

function chosenCategories() {
  return [...ui.categories.querySelectorAll("input:checked")].map((input) => input.value);
}

// --- status and errors --------------------------------------------------------------------

function setStatus(text, busy = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("busy", busy);
}

function showError(exc) {
  ui.error.replaceChildren(el("strong", {}, exc.title || "Something went wrong"), el("span", {}, exc.message));
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.replaceChildren();
}

// --- choosing a photo ---------------------------------------------------------------------

function choose(file) {
  if (!file) return;
  state.file = file;
  if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
  state.photoUrl = URL.createObjectURL(file);
  ui.fileName.textContent = `${file.name || "photo"} · ${formatBytes(file.size)}`;
  state.newPhoto = true;
  updateSubmit();
  analyse();
}

function formatBytes(size) {
  if (size >= 1024 * 1024) return `${(size / 1024 / 1024).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(size / 1024))} kB`;
}

function updateSubmit() {
  const categories = chosenCategories().length > 0;
  ui.submit.disabled = !state.file || !categories;
  if (!categories) setStatus("Pick at least one category.");
}

function wireUpload() {
  ui.pick.addEventListener("click", () => ui.file.click());
  ui.camera.addEventListener("click", () => ui.cameraFile.click());
  ui.camera.hidden = !window.matchMedia("(pointer: coarse)").matches;
  for (const input of [ui.file, ui.cameraFile]) {
    input.addEventListener("change", () => {
      choose(input.files[0]);
      input.value = "";
    });
  }
  let depth = 0;
  document.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    ui.dropzone.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) ui.dropzone.classList.remove("dragging");
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    ui.dropzone.classList.remove("dragging");
    choose(event.dataTransfer && event.dataTransfer.files[0]);
  });
}

function wireControls() {
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    analyse();
  });
  let timer = null;
  const rerun = () => {
    updateSubmit();
    clearTimeout(timer);
    if (!ui.submit.disabled) timer = setTimeout(analyse, 350);
  };
  for (const control of [ui.gender, ui.colour, ui.categories]) control.addEventListener("change", rerun);
  ui.k.addEventListener("change", () => {
    ui.k.value = String(currentK());
    rerun();
  });
}

// --- one look: upload, answer, drawing ----------------------------------------------------

async function analyse() {
  if (!state.file || chosenCategories().length === 0) return;
  if (state.request) state.request.abort();
  const request = new AbortController();
  state.request = request;
  clearError();
  showPhoto();
  setStatus(`Analysing ${state.file.name || "your photo"}: finding the items and similar products…`, true);
  const body = new FormData();
  body.append("image", state.file, state.file.name || "photo.jpg");
  try {
    const answer = await callApi(recommendUrl(), { method: "POST", body, signal: request.signal });
    if (state.request !== request) return;
    state.answer = answer;
    render(answer);
  } catch (exc) {
    if (exc.name === "AbortError") return;
    failed(exc);
  } finally {
    if (state.request === request) {
      state.request = null;
      ui.frame.classList.remove("busy");
    }
  }
}

function showPhoto() {
  ui.placeholder.hidden = true;
  ui.look.hidden = false;
  ui.frame.classList.add("busy");
  ui.photo.src = state.photoUrl;
  ui.photo.alt = `Your photo${state.file.name ? `, ${state.file.name}` : ""}`;
  ui.caption.textContent = "";
  ui.overlay.replaceChildren();
  ui.people.replaceChildren();
  ui.items.replaceChildren();
  ui.rows.replaceChildren();
  ui.degraded.hidden = true;
}

function failed(exc) {
  state.answer = null;
  ui.look.hidden = true;
  ui.rows.replaceChildren();
  ui.placeholder.hidden = false;
  setStatus("");
  showError(exc);
}

function render(answer) {
  renderDegraded(answer.degraded);
  renderBoxes(answer);
  renderSummary(answer);
  renderRows(answer);
  const people = answer.persons.length;
  const total = answer.timings_ms && answer.timings_ms.total;
  const found = answer.items.length
    ? `Found ${plural(answer.items.length, "item")} on ${plural(people, "person", "people")}`
    : "No items were found in this photo";
  setStatus(`${found}${total ? ` in ${Math.round(total)} ms` : ""}.`);
  ui.caption.textContent = `${answer.image.width} × ${answer.image.height} px · request ${answer.request_id}`;
  // on a phone the upload panel fills the screen: bring a new photo's answer into view
  if (state.newPhoto && window.matchMedia("(max-width: 959px)").matches) ui.look.scrollIntoView({ block: "start" });
  state.newPhoto = false;
}

function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

function renderDegraded(degraded) {
  ui.degraded.hidden = !degraded || degraded.length === 0;
  if (ui.degraded.hidden) return;
  const notes = degraded.map((stage) => el("li", { "data-stage": stage }, DEGRADED_NOTES[stage] || `The ${stage} stage failed.`));
  ui.degraded.replaceChildren(
    el("strong", {}, "Partial answer: "),
    el("span", {}, `${degraded.join(", ")}.`),
    el("ul", {}, ...notes),
  );
}

function boxStyle(box, image, colour) {
  const [x1, y1, x2, y2] = box;
  const pct = (value, size) => `${((100 * value) / size).toFixed(3)}%`;
  return `left:${pct(x1, image.width)};top:${pct(y1, image.height)};width:${pct(x2 - x1, image.width)};height:${pct(y2 - y1, image.height)};--c:${colour}`;
}

function categoryColour(category) {
  return `var(--${ALL_CATEGORIES.includes(category) ? category : "person"})`;
}

function personText(person, index) {
  const gender = person.gender.label === "unknown" ? "gender unknown" : person.gender.label;
  const scored = person.gender.score && person.gender.source !== "request";
  const score = scored ? ` ${Math.round(person.gender.score * 100)}%` : "";
  return `Person ${index + 1} · ${gender}${score} · ${person.full_shot ? "full shot" : "partial shot"}`;
}

function itemText(item, index) {
  const parts = [CATEGORY_NAMES[item.category] || item.category, item.article_type, item.colour].filter(Boolean);
  return `${index + 1} ${parts.join(" · ")}`;
}

function renderBoxes(answer) {
  const persons = answer.persons.map((person, index) =>
    el("div", { class: "box person", style: boxStyle(person.box, answer.image, "var(--person)"), "data-person": String(index) },
      el("span", { class: "box-label" }, personText(person, index))),
  );
  const items = answer.items.map((item, index) =>
    el("div", { class: "box item", style: boxStyle(item.box, answer.image, categoryColour(item.category)), "data-item": String(index), "data-category": item.category },
      el("span", { class: "box-label" }, itemText(item, index))),
  );
  ui.overlay.replaceChildren(...persons, ...items);
}

function renderSummary(answer) {
  const people = answer.persons.map((person, index) =>
    el("li", {},
      el("strong", {}, `Person ${index + 1}`),
      el("span", { class: "tags" },
        el("span", { class: "tag" }, genderText(person.gender)),
        el("span", { class: "tag" }, person.full_shot ? "Full shot" : "Partial shot"),
        el("span", { class: "tag" }, `Facing ${person.view}`))),
  );
  ui.people.replaceChildren(...(people.length ? people : [el("li", { class: "small" }, "No person found: the photo was read as one product.")]));
  const items = answer.items.map((item, index) =>
    el("li", {},
      el("a", { href: `#row-${index}`, style: `--c:${categoryColour(item.category)}`, "data-item": String(index) },
        el("span", { class: "badge", "aria-hidden": "true" }, String(index + 1)),
        el("span", {}, itemText(item, index).replace(/^\d+ /, "")),
        swatch(item.colour))),
  );
  ui.items.replaceChildren(...(items.length ? items : [el("li", { class: "small" }, "Nothing to show.")]));
}

function genderText(gender) {
  if (gender.label === "unknown") return "Gender unknown";
  if (gender.source === "request") return `${gender.label} · chosen`;
  return `${gender.label} · ${Math.round(gender.score * 100)}% from ${gender.source.replace("+", " and ")}`;
}

function swatch(colour) {
  if (!colour) return null;
  const fill = COLOURS[colour] || "#e5e7eb";
  return el("span", { class: "swatch", style: `background:${fill}`, title: colour, "aria-hidden": "true" });
}

// --- rows of products ---------------------------------------------------------------------

function renderRows(answer) {
  state.rows = answer.items.map((item, index) => buildRow(item, index, answer));
  ui.rows.replaceChildren(...state.rows.map((row) => row.node));
}

function buildRow(item, index, answer) {
  const node = ui.rowTemplate.content.firstElementChild.cloneNode(true);
  const row = { item, index, node, original: item.recommendations, request: null, gender: rowGender(item, answer) };
  node.id = `row-${index}`;
  node.dataset.item = String(index);
  node.dataset.category = item.category;
  node.style.setProperty("--c", categoryColour(item.category));
  node.setAttribute("aria-labelledby", `row-${index}-title`);
  $(".badge", node).textContent = String(index + 1);
  const title = $("h3", node);
  title.id = `row-${index}-title`;
  title.textContent = [CATEGORY_NAMES[item.category] || item.category, item.article_type].filter(Boolean).join(" · ");
  $(".meta", node).textContent = rowMeta(item, answer);
  $(".back", node).addEventListener("click", () => {
    if (row.request) row.request.abort();
    showProducts(row, row.original, null);
    rowStatus(row, "Back to the products like the item in your photo.");
  });
  node.addEventListener("pointerenter", () => highlight(index, true));
  node.addEventListener("pointerleave", () => highlight(index, false));
  node.addEventListener("focusin", () => highlight(index, true));
  node.addEventListener("focusout", () => highlight(index, false));
  showProducts(row, item.recommendations, null);
  return row;
}

function rowGender(item, answer) {
  if (ui.gender.value !== "auto") return ui.gender.value;
  const person = item.person === null || item.person === undefined ? null : answer.persons[item.person];
  const label = person && person.gender.label;
  return label === "Men" || label === "Women" ? label : "auto";
}

function rowMeta(item, answer) {
  const who = item.person === null || item.person === undefined ? "no person" : `person ${item.person + 1}`;
  const gender = item.person === null || item.person === undefined ? null : answer.persons[item.person].gender.label;
  return [item.colour, who, gender && gender !== "unknown" ? gender : null].filter(Boolean).join(" · ");
}

function highlight(index, on) {
  const box = ui.overlay.querySelector(`.box.item[data-item="${index}"]`);
  if (box) box.classList.toggle("active", on);
}

function showProducts(row, products, like) {
  const list = $(".products", row.node);
  const cards = products.map((product) => el("li", {}, productCard(row, product)));
  list.replaceChildren(...cards);
  if (!products.length) list.append(el("li", { class: "empty-row" }, "No matching products in the catalog."));
  $(".mode-text", row.node).textContent = like ? `More like “${like.name || like.product_id}”` : "Similar to the item in your photo";
  $(".back", row.node).hidden = !like;
  row.node.dataset.mode = like ? "similar" : "look";
  row.node.dataset.like = like ? like.product_id : "";
}

function productCard(row, product) {
  const name = product.name || `Product ${product.product_id}`;
  const image = el("img", { src: product.image_url, alt: name, loading: "lazy", decoding: "async", width: 176, height: 176 });
  image.addEventListener("error", () => image.replaceWith(el("div", { class: "img-missing", role: "img", "aria-label": `${name} (no image)` })), { once: true });
  const facts = [product.article_type, product.colour, product.gender].filter(Boolean).join(" · ");
  const score = `Score ${product.score.toFixed(2)}`;
  const label = `More like this: ${name}${facts ? ` (${facts})` : ""}, ${score.toLowerCase()}`;
  const card = el("button", { type: "button", class: "product", "data-product-id": product.product_id, "aria-label": label },
    image,
    el("span", { class: "body" },
      el("span", { class: "name" }, name),
      facts ? el("span", { class: "facts" }, facts) : null,
      el("span", { class: "score" }, score),
      el("span", { class: "cta", "aria-hidden": "true" }, "More like this")),
  );
  card.addEventListener("click", () => moreLike(row, product));
  return card;
}

function rowStatus(row, text, kind = "") {
  const status = $(".row-status", row.node);
  status.textContent = text;
  status.classList.toggle("error", kind === "error");
  row.node.classList.toggle("busy", kind === "busy");
  $(".products", row.node).setAttribute("aria-busy", kind === "busy" ? "true" : "false");
}

async function moreLike(row, product) {
  if (row.request) row.request.abort();
  const request = new AbortController();
  row.request = request;
  const name = product.name || product.product_id;
  rowStatus(row, `Finding more like “${name}”…`, "busy");
  const body = { positive: [product.product_id], k: currentK(), gender: row.gender, categories: row.item.category };
  try {
    const answer = await callApi("/similar", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: request.signal,
    });
    if (row.request !== request) return;
    const keepFocus = row.node.contains(document.activeElement);
    showProducts(row, answer.recommendations, product);
    rowStatus(row, `${plural(answer.recommendations.length, "product")} like “${name}”.`);
    const first = $(".product", row.node);
    if (first && keepFocus) first.focus();
  } catch (exc) {
    if (exc.name === "AbortError") return;
    rowStatus(row, `${exc.title || "Error"}: ${exc.message}`, "error");
  } finally {
    if (row.request === request) row.request = null;
  }
}

wireUpload();
wireControls();
updateSubmit();
setStatus("Choose or drop a photo to start.");
