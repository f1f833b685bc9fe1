// The job panel's follow-up thread and question box (issue 25).  It follows the job the
// panel shows (#detail-id), lists the conversation and the questions (#thread), and asks
// with #question-input / #question-send; the answer appears when a GPU worker gives it.
"use strict";
(function () {
  let shown = null;       // the job whose thread is on screen
  let busy = false;

  function node(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }

  async function call(path, options) {
    const r = await cxrFetch(path, options || {});
    if (r.status === 401) { location.href = "/login"; throw new Error("login"); }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.detail || (path + ": " + r.status));
    return body;
  }

  function jobId() {
    const id = (document.getElementById("detail-id") || {}).textContent || "";
    return /^\d+$/.test(id.trim()) ? id.trim() : null;
  }

  function render(t) {
    const box = document.getElementById("thread");
    const items = [];
    for (const q of t.questions) {
      const item = node("div", "question state-" + q.state);
      item.dataset.id = q.question_id;
      item.append(node("div", "asked", `Q${q.question_id} ${q.asked_by || "?"} at ${q.asked_at}: `),
                  node("div", "question-text", q.question));
      if (q.state === "answered") {
        if (q.reasoning) item.append(node("pre", "question-reasoning", q.reasoning));
        const a = node("pre", "question-answer", q.answer);
        a.id = "answer-" + q.question_id;
        item.append(a, node("div", "muted", `${q.status} (${q.route}) at ${q.answered_at}`));
      } else if (q.state === "failed") {
        item.append(node("div", "state-failed", "not answered: " + q.error));
      } else {
        item.append(node("div", "muted question-waiting",
                         q.state + (q.waiting_for ? ": waiting for " + q.waiting_for : "")));
      }
      if (q.addendum) {
        item.append(node("div", "muted", "addendum SR: " + q.addendum.state
          + (q.addendum.sop_instance_uid ? " " + q.addendum.sop_instance_uid : "")
          + (q.addendum.detail ? " (" + q.addendum.detail + ")" : "")));
      } else if (q.state === "answered") {
        const b = node("button", "question-addendum", "send thread to PACS as addendum SR");
        b.onclick = () => call(`/api/questions/${q.question_id}/addendum`, {method: "POST"})
          .then(load).catch(e => { b.textContent = "failed: " + e.message; });
        item.append(b);
      }
      items.push(item);
    }
    if (!items.length) items.push(node("div", "muted", "No questions yet."));
    box.replaceChildren(...items);
    box.dataset.job = t.job_id;
    box.className = "";
  }

  async function load() {
    const id = jobId();
    if (id === null || busy) return;
    busy = true;
    try {
      if (id !== shown) { document.getElementById("thread").replaceChildren(); shown = id; }
      render(await call(`/api/jobs/${id}/questions`));
    } catch (e) {
      document.getElementById("question-status").textContent = "thread: " + e.message;
    } finally { busy = false; }
  }

  async function send() {
    const id = jobId();
    const input = document.getElementById("question-input");
    const status = document.getElementById("question-status");
    const text = input.value.trim();
    if (id === null || !text) { status.textContent = "choose a job and type a question"; return; }
    const toPacs = document.getElementById("question-to-pacs").checked;
    status.textContent = "asking...";
    try {
      const q = await call(`/api/jobs/${id}/questions`, {method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({question: text, to_pacs: toPacs})});
      input.value = "";
      status.textContent = `question ${q.question_id} asked; the answer appears below`;
      await load();
    } catch (e) { status.textContent = "not asked: " + e.message; }
  }

  document.getElementById("question-send").onclick = send;
  document.getElementById("question-input").addEventListener("keydown", e => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(); });
  load();
  setInterval(load, 1500);
})();
