// The reader study's reading page (worker/ops/api/readers.py). It shows only what the
// server gives for the current read; the server keeps the clock and refuses anything the
// condition does not allow. Window and level are rendered by the gateway (image.png);
// zoom and pan move the full-resolution image in the page.
"use strict";
const STUDY = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const BASE = "/api/readers/" + encodeURIComponent(STUDY);
let view = null;          // the current read, as /current gives it
let active = 0;           // visible seconds not yet sent
let zoom = 1, panX = 0, panY = 0, imageInfo = null, windowTimer = null;

function csrfToken() {
  const m = document.cookie.match(/(?:^|; )cxr_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}
async function call(path, body) {
  const options = {credentials: "same-origin", headers: {}};
  if (body !== undefined) {
    options.method = "POST";
    options.headers = {"Content-Type": "application/json", "X-CSRF-Token": csrfToken()};
    options.body = JSON.stringify(body);
  }
  const r = await fetch(BASE + path, options);
  if (r.status === 401) { location.href = "/login"; throw new Error("log in again"); }
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail
                                                           : JSON.stringify(data.detail));
  return data;
}
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node[k] = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}
const $ = id => document.getElementById(id);
function status(text) { $("status").textContent = text || ""; }

// -- the image: the gateway's windowing, the page's zoom and pan --------------------------
function place() {
  $("image").style.transform = `translate(${panX}px, ${panY}px) scale(${zoom})`;
}
function fit() {
  const box = $("viewport").getBoundingClientRect();
  if (!imageInfo) return;
  zoom = Math.min(box.width / imageInfo.width, box.height / imageInfo.height);
  panX = (box.width - imageInfo.width * zoom) / 2;
  panY = (box.height - imageInfo.height * zoom) / 2; place();
}
function windowed() {
  const c = $("window-center").value, w = $("window-width").value;
  $("center-value").textContent = Number(c).toFixed(0);
  $("width-value").textContent = Number(w).toFixed(0);
  return `${BASE}/image.png?position=${view.position}&center=${c}&width=${w}`;
}
async function loadImage() {
  imageInfo = await call(`/image?position=${view.position}`);
  const span = Math.max(imageInfo.high - imageInfo.low, 1);
  const c = $("window-center"), w = $("window-width");
  c.min = imageInfo.low - span / 2; c.max = imageInfo.high + span / 2; c.value = imageInfo.center;
  w.min = 1; w.max = span * 2; w.value = imageInfo.window;
  $("image-size").textContent = `${imageInfo.width} x ${imageInfo.height} px`;
  $("image").onload = () => { $("image").dataset.loaded = "1"; };
  $("image").src = `${BASE}/image.png?position=${view.position}`;  // its own window first
  $("center-value").textContent = imageInfo.center.toFixed(0);
  $("width-value").textContent = imageInfo.window.toFixed(0);
  fit();
}
function onWindow() {
  clearTimeout(windowTimer);
  windowTimer = setTimeout(() => { $("image").src = windowed(); }, 200);
}
function zoomAt(factor, x, y) {
  panX = x - (x - panX) * factor; panY = y - (y - panY) * factor; zoom *= factor; place();
}
$("window-center").oninput = onWindow;
$("window-width").oninput = onWindow;
$("zoom-in").onclick = () => { const b = $("viewport").getBoundingClientRect();
  zoomAt(1.25, b.width / 2, b.height / 2); };
$("zoom-out").onclick = () => { const b = $("viewport").getBoundingClientRect();
  zoomAt(0.8, b.width / 2, b.height / 2); };
$("view-reset").onclick = () => {
  if (!imageInfo) return;
  $("window-center").value = imageInfo.center; $("window-width").value = imageInfo.window;
  $("image").src = `${BASE}/image.png?position=${view.position}`; fit();
};
$("viewport").onwheel = e => { e.preventDefault();
  const b = $("viewport").getBoundingClientRect();
  zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - b.left, e.clientY - b.top); };
let drag = null;
$("viewport").onpointerdown = e => { drag = {x: e.clientX - panX, y: e.clientY - panY};
  $("viewport").classList.add("dragging"); };
window.onpointerup = () => { drag = null; $("viewport").classList.remove("dragging"); };
window.onpointermove = e => { if (drag) { panX = e.clientX - drag.x; panY = e.clientY - drag.y;
  place(); } };

// -- what the condition shows ------------------------------------------------------------
function aiPanel(v) {
  const panel = $("ai-panel");
  panel.replaceChildren();
  if (v.condition === "no_ai") {
    panel.append(el("p", {class: "muted", id: "no-ai-note"},
      "No AI: read the study and dictate your report as in routine practice."));
    return;
  }
  const labels = el("ul", {id: "labels"}, ...(v.labels || []).map(l => el("li", {}, l)));
  if (!(v.labels || []).length) labels.append(el("li", {class: "muted"},
    v.result_status === "ok" ? "no abnormality listed"
                             : `the model gave no list (${v.result_status || "no result"})`));
  panel.append(el("h3", {}, "AI abnormality list"), labels);
  if (v.condition !== "full") return;
  const copy = el("button", {id: "copy-report", type: "button", onclick: () => {
    $("report-editor").value = v.structured_report; $("report-editor").focus(); }},
    "Copy into my report");
  panel.append(el("h3", {}, "AI reasoning"), el("pre", {id: "reasoning"}, v.reasoning),
               el("h3", {}, "AI structured report"),
               el("pre", {id: "structured-report"}, v.structured_report), copy);
}
function questionnaire(v) {
  const box = $("items");
  box.replaceChildren(...v.items.map(item => el("div", {class: "item", id: "item-" + item.code},
    el("div", {}, `${item.code}. ${item.text}`),
    el("div", {class: "scale"}, ...Object.entries(v.likert).map(([value, word]) => el("label", {},
      el("input", {type: "radio", name: "item-" + item.code, value, id: `answer-${item.code}-${value}`,
                   onchange: completeness}), ` ${value} ${word}`))))));
  $("comment").value = "";
  completeness();
}
function answers() {
  const out = {};
  for (const item of view.items) {
    const chosen = document.querySelector(`input[name="item-${item.code}"]:checked`);
    if (chosen) out[item.code] = Number(chosen.value);
  }
  return out;
}
function completeness() {
  $("submit-answers").disabled = Object.keys(answers()).length < view.items.length;
}

function draw(v) {
  const changed = !view || view.position !== v.position;
  const newStage = changed || view.stage !== v.stage;
  view = v;
  $("study-name").textContent = v.study;
  if (v.mock) { $("mock-banner").hidden = false; $("mock-banner").textContent = v.mock_note; }
  if (v.stage === "finished") {
    for (const id of ["report-panel", "questionnaire", "ai-panel"]) $(id).hidden = true;
    $("finished").hidden = false; $("progress").textContent = `${v.total} of ${v.total} reads done`;
    $("condition").textContent = "-"; return;
  }
  $("progress").textContent = `read ${v.position} of ${v.total}`;
  $("condition").textContent = v.condition_name;
  $("condition").dataset.condition = v.condition;
  $("case").textContent = v.case;
  if (changed) {
    aiPanel(v);
    $("report-editor").value = v.prefill;
    active = 0;
    loadImage().catch(e => status("image: " + e.message));
  }
  const asking = v.stage === "questions";
  $("report-panel").hidden = asking;
  $("questionnaire").hidden = !asking;
  if (asking && newStage) questionnaire(v);
}
async function load() {
  try { draw(await call("/current")); status(""); } catch (e) { status(e.message); }
}
$("submit-report").onclick = async () => {
  $("submit-report").disabled = true;
  try {
    const sent = active; active = 0;
    draw(await call("/report", {position: view.position, report: $("report-editor").value,
                                active_seconds: sent}));
    status("");
  } catch (e) { status(e.message); } finally { $("submit-report").disabled = false; }
};
$("submit-answers").onclick = async () => {
  $("submit-answers").disabled = true;
  try {
    draw(await call("/answers", {position: view.position, answers: answers(),
                                 comment: $("comment").value}));
    status("");
  } catch (e) { status(e.message); completeness(); }
};
$("logout").onclick = async () => {
  await fetch("/logout", {method: "POST", credentials: "same-origin",
                          headers: {"X-CSRF-Token": csrfToken()}}).catch(() => null);
  location.href = "/login";
};
// the page's visible time, counted each second and sent every 15 s (the server bounds it)
setInterval(() => {
  if (view && view.stage === "report" && document.visibilityState === "visible") active += 1;
}, 1000);
setInterval(() => {
  if (!view || view.stage !== "report" || active <= 0) return;
  const sent = active; active = 0;
  call("/active", {position: view.position, seconds: sent}).catch(() => { active += sent; });
}, 15000);
fetch("/api/me", {credentials: "same-origin"}).then(r => r.json()).then(me => {
  $("me").textContent = me.name; }).catch(() => null);
window.onresize = fit;
load();
