// Live progress of one optimization run from its server-sent events: counts, spend against
// budget, a timeline, and the score-cost scatter. Text goes in with textContent only.
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root || !window.EventSource) { return; }
  var NS = "http://www.w3.org/2000/svg";
  var candidates = {}, tried = 0, eliminated = 0;
  var $ = function (id) { return document.getElementById(id); };
  var money = function (v, d) {
    if (v == null) { return "—"; }
    var x = Number(v);
    if (x !== 0 && Math.abs(x) < 0.01) { d = 1 - Math.floor(Math.log10(Math.abs(x))); }
    return "$" + x.toFixed(Math.min(d || 2, 12));
  };

  function note(kind, data) {
    var li = document.createElement("li");
    var detail = data.label || data.reason || data.status || data.verdict ||
      (data.suggestion_id ? "suggestion #" + data.suggestion_id : "");
    li.textContent = kind + (detail ? " · " + detail : "");
    $("timeline").appendChild(li);
  }

  // A candidate.scored event carries a CandidateScores record (trimloop/core/evidence.py): sha, label,
  // status, cost_per_call and evidence (evaluator key → Verdict); this mirrors CandidateScores.mean_score.
  function meanScore(evidence) {
    var keys = Object.keys(evidence), total = 0, n = 0;
    keys.forEach(function (k) { var m = evidence[k].candidate_mean; if (m != null) { total += m; n += 1; } });
    return n ? total / n : null;
  }

  function draw() {
    var svg = $("pareto"), dots = $("dots"), box = svg.viewBox.baseVal;
    var pts = Object.keys(candidates).map(function (k) { return candidates[k]; })
      .filter(function (c) { return c.cost != null && c.score != null; });
    if (!pts.length) { return; }
    var top = Math.max.apply(null, pts.map(function (c) { return c.cost; })) * 1.1 || 1;
    while (dots.firstChild) { dots.removeChild(dots.firstChild); }
    pts.forEach(function (c) {
      var dot = document.createElementNS(NS, "circle"), title = document.createElementNS(NS, "title");
      dot.setAttribute("cx", (48 + c.cost / top * (box.width - 60)).toFixed(1));
      dot.setAttribute("cy", (8 + (1 - c.score) * (box.height - 40)).toFixed(1));
      dot.setAttribute("r", "5");
      dot.setAttribute("stroke", "#2b6cb0");
      dot.setAttribute("stroke-width", "2");
      dot.setAttribute("fill", (c.status === "eliminated" || c.status === "dropped") ? "none" : "#2b6cb0");
      title.textContent = c.label + ": score " + c.score.toFixed(2) + ", " + money(c.cost, 5) + " per call";
      dot.appendChild(title);
      dots.appendChild(dot);
    });
    $("x-top").textContent = money(top, 4) + " / call";
  }

  var source = new EventSource(root.getAttribute("data-events"));
  function on(kind, handler) {
    source.addEventListener(kind, function (e) { var data = JSON.parse(e.data || "{}"); handler(data); if (kind !== "progress") { note(kind, data); } });
  }
  ["run.queued", "run.claimed", "run.started", "dataset.ready", "search.started", "search.finished",
   "certify.started", "certify.finished", "suggestion.created", "run.no_suggestion",
   "run.preflight", "run.succeeded", "run.failed", "run.cancelled", "run.blocked", "baseline.health",
   "run.baseline_unhealthy"].forEach(function (k) { on(k, function () {}); });
  on("candidate.proposed", function (d) {
    if (!candidates[d.sha]) { tried += 1; }
    candidates[d.sha] = { label: d.label || d.sha.slice(0, 8), cost: null, score: null, status: "racing" };
    $("tried").textContent = String(tried);
  });
  on("candidate.scored", function (d) {
    var c = candidates[d.sha] || (candidates[d.sha] = { label: d.label || d.sha.slice(0, 8) });
    c.cost = d.cost_per_call; c.score = meanScore(d.evidence); c.status = d.status;
    draw();
  });
  on("candidate.eliminated", function (d) {
    if (candidates[d.sha] && candidates[d.sha].status !== "eliminated") { candidates[d.sha].status = "eliminated"; }
    eliminated += 1;
    $("eliminated").textContent = String(eliminated);
    draw();
  });
  source.addEventListener("progress", function (e) {
    var p = JSON.parse(e.data || "null");
    if (!p) { return; }
    if ($("status").textContent !== p.status && p.outcome) {
      var out = $("outcome");
      while (out.firstChild) { out.removeChild(out.firstChild); }
      var b = document.createElement("strong");
      b.textContent = "Outcome:";
      out.appendChild(b);
      out.appendChild(document.createTextNode(" " + p.outcome));
      out.className = "outcome outcome-" + p.status;
    }
    $("status").textContent = p.status;
    var text = money(p.spent_dollars, 4) + (p.budget_dollars ? " of " + money(p.budget_dollars) : "") +
      " · " + p.calls_made + (p.budget_calls ? " of " + p.budget_calls : "") + " calls";
    $("spend").textContent = text;
    var shares = [p.budget_dollars ? p.spent_dollars / p.budget_dollars : 0, p.budget_calls ? p.calls_made / p.budget_calls : 0];
    $("budget").value = Math.min(1, Math.max(shares[0], shares[1]));
  });
  source.addEventListener("end", function () {
    source.close();
    if ($("tried").textContent === "—") { $("tried").textContent = String(tried); }
    if ($("eliminated").textContent === "—") { $("eliminated").textContent = String(eliminated); }
    root.setAttribute("data-done", "true");
  });
})();
