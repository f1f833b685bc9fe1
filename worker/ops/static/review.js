// The reviewer's side of the dashboard (issue 25): a verdict form on the job panel, quick
// to fill while reading the image and the reasoning (every label starts at "agree"; one
// click on "disagree" flips the model's call), the verdicts recorded on the job, the
// batch runs with progress, rate and ETA, and agreement per label so far.  It follows the
// job the panel shows (#detail-id) and is rebuilt only when that job changes, so a
// half-filled form survives the page's refreshes.  Verdicts are recorded under the name
// of the token the browser logged in with (GET /api/me), never a name typed here.
"use strict";
(function () {
  const VERDICTS = [["agree", "agree"], ["disagree", "disagree"], ["not_assessable", "n/a"]];
  let formJob = null;     // the job whose form is on screen
  let me = "";

  function node(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") n.className = v; else if (k === "text") n.textContent = v;
      else if (k.startsWith("on")) n[k] = v; else n.setAttribute(k, v);
    }
    for (const c of children) n.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
    return n;
  }
  const slug = label => label.replace(/ /g, "_");

  async function call(path, options) {
    const r = await cxrFetch(path, options || {});
    if (r.status === 401) { location.href = "/login"; throw new Error("login"); }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(typeof body.detail === "string" ? body.detail
                               : (path + ": " + r.status));
    return body;
  }

  function jobId() {
    const id = ((document.getElementById("detail-id") || {}).textContent || "").trim();
    return /^\d+$/.test(id) ? id : null;
  }

  function reviewerSet(data) {
    const model = new Set(data.model_labels);
    return data.labels.filter(label => {
      const v = (document.querySelector(`input[name="verdict-${slug(label)}"]:checked`) || {}).value;
      if (v === "not_assessable") return false;
      return v === "disagree" ? !model.has(label) : model.has(label);
    });
  }

  function summary(data) {
    const mine = reviewerSet(data);
    document.getElementById("review-labels").textContent =
      "reviewer's labels: " + (mine.join(", ") || "none");
  }

  function history(reviews) {
    const box = document.getElementById("review-history");
    box.replaceChildren(...reviews.map(r => node("div",
      {class: "review" + (r.current ? " current" : " replaced"), "data-id": r.review_id},
      `${r.reviewer} at ${r.at}${r.current ? "" : " (replaced)"}: changed `
      + (r.changed.join(", ") || "nothing") + "; labels " + (r.labels.join(", ") || "none")
      + (r.not_assessable.length ? "; not assessable " + r.not_assessable.join(", ") : "")
      + (r.note ? "; note: " + r.note : ""))));
    if (!reviews.length) box.replaceChildren(node("div", {class: "muted"}, "No verdict yet."));
  }

  function build(id, data) {
    const model = new Set(data.model_labels);
    const rows = data.labels.map(label => {
      const cells = VERDICTS.map(([value, text]) => node("td", {},
        node("label", {}, node("input", {type: "radio", name: `verdict-${slug(label)}`,
          id: `verdict-${slug(label)}-${value}`, value, onchange: () => summary(data),
          ...(value === "agree" ? {checked: "checked"} : {})}), " " + text)));
      return node("tr", {class: model.has(label) ? "called" : ""},
        node("td", {}, label), node("td", {class: "model-call"}, model.has(label) ? "yes" : "-"),
        ...cells);
    });
    const form = node("div", {id: "review-box"},
      node("div", {class: "muted"}, `recording as ${me || "?"}; model result: `
        + (data.model_labels.join(", ") || "no label")),
      node("table", {id: "review-table"}, node("thead", {}, node("tr", {},
        node("th", {}, "label"), node("th", {}, "model"), node("th", {}, "agree"),
        node("th", {}, "disagree"), node("th", {}, "not assessable"))),
        node("tbody", {}, ...rows)),
      node("div", {id: "review-labels", class: "muted"}),
      node("textarea", {id: "review-note", rows: "2", cols: "50",
                        placeholder: "note (no patient data)"}),
      node("div", {}, node("button", {id: "review-save", onclick: () => save(id, data)},
                           "Save verdict"), " ", node("span", {id: "review-status", class: "muted"})),
      node("h4", {}, "Verdicts on this job"), node("div", {id: "review-history"}));
    document.getElementById("review-form").replaceChildren(form);
    document.getElementById("review-form").className = "";
    summary(data);
    history(data.reviews);
  }

  async function save(id, data) {
    const status = document.getElementById("review-status");
    const verdicts = {};
    for (const label of data.labels) {
      verdicts[label] = document.querySelector(
        `input[name="verdict-${slug(label)}"]:checked`).value;
    }
    status.textContent = "saving...";
    try {
      const r = await call(`/api/jobs/${id}/reviews`, {method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({verdicts, note: document.getElementById("review-note").value})});
      status.textContent = `verdict ${r.review_id} saved by ${r.reviewer}`;
      history((await call(`/api/jobs/${id}/reviews`)).reviews);
      agreement();
    } catch (e) { status.textContent = "not saved: " + e.message; }
  }

  let built = "";         // what the form on screen was built from (the model's call)
  let ticks = 0;
  async function follow() {
    const id = jobId();
    ticks += 1;
    // the same job: look again now and then, in case its result arrived since (a form
    // built before the model answered would show the wrong calls); else leave it alone
    if (id === null || (id === formJob && (ticks % 3 || built.startsWith("true")))) return;
    const fresh = id !== formJob;
    formJob = id;
    try {
      const data = await call(`/api/jobs/${id}/reviews`);
      const key = `${data.has_result}|${data.model_labels.join(",")}`;
      if (formJob === id && (fresh || key !== built)) { built = key; build(id, data); }
    } catch (e) {
      document.getElementById("review-form").textContent = "verdicts: " + e.message;
    }
  }

  function seconds(v) {
    if (v === null || v === undefined) return "-";
    return v >= 3600 ? (v / 3600).toFixed(1) + " h" : v >= 90 ? Math.round(v / 60) + " min"
      : v + " s";
  }

  async function batches() {
    let runs;
    try { runs = await call("/api/batches"); } catch (e) { return; }
    const body = document.querySelector("#batches tbody");
    body.replaceChildren(...runs.map(b => node("tr", {class: "batch", "data-name": b.name},
      node("td", {}, b.name), node("td", {class: "uid"}, `${b.kind}: ${b.source}`),
      node("td", {}, node("progress", {max: String(b.total || 1), value: String(b.finished)}),
           ` ${b.finished} / ${b.total}` + (b.running ? "" : b.finished_at ? " (finished)"
                                            : " (stopped)")),
      node("td", {}, Object.entries(b.counts).map(([k, v]) => `${k} ${v}`).join(", ")),
      node("td", {class: "rate"}, b.rate_per_s === null ? "-"
           : `${b.rate_per_s} studies/s over ${seconds(b.elapsed_s)}`),
      node("td", {class: "eta"}, b.running ? seconds(b.eta_s) : "-"),
      node("td", {class: "uid"}, b.model_key))));
    if (!runs.length) body.replaceChildren(node("tr", {}, node("td", {class: "muted"},
                                                               "No batch run yet.")));
  }

  async function agreement() {
    let a;
    try { a = await call("/api/reviews/agreement"); } catch (e) { return; }
    document.getElementById("agreement-summary").textContent = `${a.reviews} verdict(s) on `
      + `${a.studies} stud(ies) by ${a.reviewers.join(", ") || "nobody yet"}`
      + (a.agreement === null ? "" : `; overall ${(100 * a.agreement).toFixed(1)} %`);
    document.querySelector("#agreement tbody").replaceChildren(...a.labels.map(l =>
      node("tr", {"data-label": l.label}, node("td", {}, l.label), node("td", {}, l.agree),
        node("td", {}, l.disagree), node("td", {}, l.not_assessable),
        node("td", {}, l.agreement === null ? "-" : (100 * l.agreement).toFixed(1) + " %"))));
  }

  call("/api/me").then(r => { me = r.name; }).catch(() => {}).finally(() => {
    follow(); batches(); agreement();
    setInterval(follow, 1000);
    setInterval(batches, 3000);
    setInterval(agreement, 5000);
  });
})();
