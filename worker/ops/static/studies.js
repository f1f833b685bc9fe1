// The dashboard's reader-study section (issue 34): each study's progress per reader, a link
// to the reading page for a reader the study lists, and for the operator the summary
// (worker/readers/summary.py via /api/readers/NAME/summary). Readers see only their own
// progress and never the summary.
"use strict";
(function () {
  const section = document.getElementById("reader-studies");
  if (!section) return;
  const fmt = v => v === null || v === undefined ? "-" : Number(v).toFixed(2);
  const names = {no_ai: "No AI", labels: "Labels only", full: "Full reasoning"};
  async function get(path) {
    const r = await fetch(path, {credentials: "same-origin"});
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.json();
  }
  function summaryTable(s) {
    const head = el("tr", {}, el("th", {}, "statement"), el("th", {}, "condition"),
      el("th", {}, "mean"), el("th", {}, "sd"), el("th", {}, "n"), el("th", {}, "paper"));
    const rows = s.items.map(r => el("tr", {class: "summary-item"}, el("td", {}, r.item),
      el("td", {}, names[r.condition]), el("td", {}, fmt(r.mean)), el("td", {}, fmt(r.sd)),
      el("td", {}, r.n), el("td", {}, r.paper === null ? "" : fmt(r.paper))));
    const ratio = s.ratios.map(r => el("p", {class: "summary-ratio"},
      `${r.group} cases: full / no-AI report time ${fmt(r.ratio)} (95% CI ${fmt(r.ci_low)}`
      + ` to ${fmt(r.ci_high)}); Wilcoxon W ${r.wilcoxon.statistic ?? r.wilcoxon.why_not}`
      + (r.wilcoxon.p_value === null ? "" : `, p ${fmt(r.wilcoxon.p_value)}`)));
    return el("div", {class: "summary"}, el("table", {}, el("thead", {}, head),
                                           el("tbody", {}, ...rows)), ...ratio);
  }
  async function refreshStudies() {
    let studies;
    let me;
    try { [studies, me] = await Promise.all([get("/api/readers"), get("/api/me")]); }
    catch (e) { return; }
    const operator = me.permissions.includes("study-results");
    const blocks = [];
    for (const st of studies) {
      const progress = st.progress.map(p => `${p.reader} ${p.done} / ${p.total}`).join(", ");
      const block = el("div", {class: "reader-study", "data-name": st.name},
        el("h3", {}, `${st.name}${st.mock ? " (MOCK)" : ""}: ${st.cases} cases, ${st.source}`),
        el("p", {class: "study-progress"}, progress || "no reads yet"));
      if (!operator) block.append(el("a", {href: "/read/" + encodeURIComponent(st.name),
                                           class: "read-link"}, "open the reading page"));
      else block.append(summaryTable(await get(`/api/readers/${encodeURIComponent(st.name)}`
                                               + "/summary")));
      blocks.push(block);
    }
    section.querySelector(".studies").classList.remove("muted");
    section.querySelector(".studies").replaceChildren(
      ...(blocks.length ? blocks : [el("p", {class: "muted"}, "no reader studies")]));
  }
  refreshStudies();
  setInterval(refreshStudies, 10000);
})();
