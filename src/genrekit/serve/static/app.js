// The genrekit page: upload one file to /v1/predict, then draw the top genres and the per-segment timeline.
// Plain DOM and SVG, no libraries: the page must work on machines without internet access.
"use strict";

// Genre colours come from the server (/palette.json, genrekit.palette): the same as in the PNGs and the demo page.
let palette = {};
const SVG_NS = "http://www.w3.org/2000/svg";
const TOP_K = 5;
const TAGS = 5; // musicnn tags shown as chips under the genre (the model's own probabilities, 2 decimals as `predict --tags` prints them)
const STATUS_MESSAGES = {
  0: "The server could not be reached. Check that `genrekit serve` is still running and try again.",
  413: "The file is too large for this server.",
  415: "This file could not be read as audio.",
  422: "This file could not be analysed.",
  503: "The server is busy with other songs. Please try again in a moment.",
};

const $ = (id) => document.getElementById(id);
// A server started with a token (`genrekit serve --token` / GENREKIT_TOKEN) answers 401 without it: ask once, keep it for this tab.
const TOKEN_KEY = "genrekit-token";

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function askForToken() {
  const token = window.prompt("This server needs an access token. Ask whoever runs it, and enter it here:");
  if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
  else sessionStorage.removeItem(TOKEN_KEY);
  return Boolean(token);
}
let labels = [];
let shown = null; // the result on screen, redrawn when the window changes width

function colorOf(genre) {
  return palette[genre] || "#999";
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function percent(p) {
  return p >= 0.995 ? "100%" : p < 0.005 ? "<1%" : `${Math.round(p * 100)}%`;
}

function clock(seconds) {
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function show(section) {
  for (const id of ["status", "error", "result"]) $(id).hidden = id !== section;
}

async function loadModelInfo() {
  try {
    let response = await fetch("/v1/models", { headers: authHeaders() });
    if (response.status === 401 && askForToken()) response = await fetch("/v1/models", { headers: authHeaders() });
    const model = (await response.json()).models[0];
    labels = model.labels;
    palette = await (await fetch("/palette.json")).json();
    const name = model.name.split(/[\\/]/).filter(Boolean).pop() || model.name;
    // Plain words for people who want a genre; the recipe and the protocol stay a hover away for the curious.
    $("model-info").textContent = [`Model “${name}” tells ${labels.length} genres apart: ${labels.join(", ")}.`, modelFigures(model)]
      .filter(Boolean)
      .join(" ");
    $("model-info").title = [model.description, (model.validation || {}).protocol].filter(Boolean).join(". ");
    $("model-info").hidden = false;
  } catch (err) {
    labels = [];
  }
}

// The model card's headline, as `genrekit models` prints it: accuracy and macro recall with their 95% intervals.
function modelFigures(model) {
  const v = model.validation || {};
  if (typeof v.track_accuracy !== "number") return "";
  const range = (ci) => (Array.isArray(ci) ? `, between ${percent(ci[0])} and ${percent(ci[1])} with 95% confidence` : "");
  const n = v.n_tracks ? ` of ${v.n_tracks} tracks it was not trained on` : " of the tracks it was tested on";
  return `It named the right genre for ${percent(v.track_accuracy)}${n}${range(v.track_accuracy_ci95)}.`;
}

function setProgress(text, value) {
  show("status");
  $("status-text").textContent = text;
  const bar = $("progress");
  if (value === null) bar.removeAttribute("value");
  else bar.value = value;
}

function showError(message) {
  $("error-text").textContent = message;
  show("error");
  $("dropzone").classList.remove("busy");
}

function upload(file) {
  $("dropzone").classList.add("busy");
  setProgress(`Uploading “${file.name}”…`, 0);
  const form = new FormData();
  form.append("file", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/v1/predict?top_k=${TOP_K}&segments=true&tags=${TAGS}`);
  xhr.responseType = "json";
  for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setProgress(`Uploading “${file.name}”… ${Math.round((100 * e.loaded) / e.total)}%`, (100 * e.loaded) / e.total);
  };
  xhr.upload.onload = () => setProgress(`Listening to “${file.name}”… this takes a few seconds per minute of music.`, null);
  xhr.onerror = () => showError(STATUS_MESSAGES[0]);
  xhr.onload = () => {
    const body = xhr.response;
    if (xhr.status === 200 && body) {
      render(body);
      return;
    }
    if (xhr.status === 401 && askForToken()) {
      upload(file);
      return;
    }
    const detail = body && typeof body.detail === "string" ? body.detail : null;
    showError(detail || STATUS_MESSAGES[xhr.status] || `The server answered with an error (HTTP ${xhr.status}).`);
  };
  xhr.send(form);
}

function render(result) {
  shown = result;
  $("dropzone").classList.remove("busy");
  const where = `“${result.path}” · ${clock(result.duration_s)} long, ${result.n_segments} pieces`;
  if (result.genre === null) {
    $("top-genre").textContent = "No genre: the file is silent";
    $("top-genre").style.color = "";
    $("result-meta").textContent = where;
  } else {
    $("top-genre").textContent = result.uncertain ? `${result.genre}?` : result.genre;
    $("top-genre").style.color = colorOf(result.genre);
    const unsure = result.uncertain ? " · uncertain: below the model's confidence threshold, treat it as a guess" : "";
    $("result-meta").textContent = `${percent(result.confidence)} confident${unsure} · ${where}`;
  }
  $("result-notes").textContent = (result.warnings || []).join(" · ");
  $("result-notes").hidden = !(result.warnings || []).length;
  renderTags(result);
  show("result");
  renderBars(result.top_k);
  renderTimeline(result.segments || [], result.duration_s);
}

// musicnn's tags as chips; when the genre is uncertain, one line naming the strongest tags that are not genres of the
// model (the line of genrekit.tags.uncertain_hint). A model without tags (cnn1, cnn2) sends none and shows none.
function renderTags(result) {
  const tags = result.tags || [];
  const chips = $("tags");
  chips.replaceChildren();
  for (const { tag, source, score } of tags) {
    const chip = el("li", "tag", tag);
    chip.title = `${source}: ${score.toFixed(2)}, the tagger's probability that “${tag}” applies`;
    chip.append(" ", el("span", "tag-score", score.toFixed(2)));
    chips.append(chip);
  }
  chips.hidden = !tags.length;
  const like = tags.map((t) => t.tag).filter((t) => !labels.includes(t)).slice(0, 2);
  const hint = $("tags-hint");
  const count = labels.length === 10 ? "ten" : String(labels.length);
  hint.textContent = like.length ? `not clearly one of the ${count} genres; sounds like: ${like.join(", ")}` : "";
  hint.hidden = !(result.uncertain && result.genre !== null && like.length);
}

function renderBars(topK) {
  const list = $("bars");
  list.replaceChildren();
  for (const { genre, probability } of topK) {
    const item = el("li", "bar-row");
    item.dataset.genre = genre;
    item.append(el("span", "bar-name", genre));
    const track = el("span", "bar-track");
    const fill = el("span", "bar-fill");
    fill.style.width = `${Math.max(probability * 100, 0.5)}%`;
    fill.style.background = colorOf(genre);
    track.append(fill);
    item.append(track, el("span", "bar-value", percent(probability)));
    list.append(item);
  }
}

function renderTimeline(segments, duration) {
  const box = $("timeline");
  box.replaceChildren();
  $("legend").replaceChildren();
  if (!segments.length) return;
  // Draw at the box's real width so axis text keeps its size on narrow screens.
  const W = Math.max(box.clientWidth || 720, 280), H = 200, left = 40, right = 8, top = 8, bottom = 26;
  const plotW = W - left - right, plotH = H - top - bottom;
  const end = Math.max(duration, segments[segments.length - 1].end_s);
  const x = (t) => left + (t / end) * plotW;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Genre probabilities over time" });

  for (const p of [0, 0.5, 1]) {
    const y = top + plotH * (1 - p);
    chart.append(svg("line", { x1: left, x2: W - right, y1: y, y2: y, class: "grid" }));
    const label = svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "axis" });
    label.textContent = `${p * 100}%`;
    chart.append(label);
  }

  const inLegend = new Set();
  for (const seg of segments) {
    const x0 = x(seg.start_s), width = Math.max(x(seg.end_s) - x0 - 1, 1);
    let y = top + plotH;
    for (const genre of labels.length ? labels : Object.keys(seg.probabilities)) {
      const p = seg.probabilities[genre] || 0;
      if (p <= 0) continue;
      const h = p * plotH;
      y -= h;
      const rect = svg("rect", { x: x0, y, width, height: h, fill: colorOf(genre) });
      const tip = svg("title", {});
      tip.textContent = `${clock(seg.start_s)}–${clock(seg.end_s)}: ${genre} ${percent(p)}`;
      rect.append(tip);
      chart.append(rect);
      if (p >= 0.02) inLegend.add(genre);
    }
  }

  const step = niceStep(end, Math.max(2, Math.floor(plotW / 70)));
  for (let t = 0; t <= end + 1e-6; t += step) {
    const anchor = t === 0 ? "start" : x(t) > W - right - 15 ? "end" : "middle";
    const tick = svg("text", { x: x(t), y: H - 8, "text-anchor": anchor, class: "axis" });
    tick.textContent = clock(t);
    chart.append(tick);
  }
  box.append(chart);

  for (const genre of labels.filter((g) => inLegend.has(g))) {
    const item = el("li");
    const swatch = el("span", "swatch");
    swatch.style.background = colorOf(genre);
    item.append(swatch, document.createTextNode(genre));
    $("legend").append(item);
  }
}

function niceStep(seconds, maxTicks) {
  for (const step of [5, 10, 15, 30, 60, 120, 300, 600]) if (seconds / step <= maxTicks) return step;
  return 900;
}

function setUpDropzone() {
  const zone = $("dropzone");
  const input = $("file");
  input.addEventListener("change", () => {
    if (input.files.length) upload(input.files[0]);
    input.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    window.addEventListener(type, (e) => {
      e.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "dragend"]) window.addEventListener(type, () => zone.classList.remove("dragging"));
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    const files = e.dataTransfer && e.dataTransfer.files;
    if (files && files.length === 1) upload(files[0]);
    else if (files && files.length > 1) showError("Please drop one file at a time.");
  });
}

setUpDropzone();
loadModelInfo();
window.addEventListener("resize", () => {
  if (shown && !$("result").hidden) renderTimeline(shown.segments || [], shown.duration_s);
});
