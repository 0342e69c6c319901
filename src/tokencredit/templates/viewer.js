(function () {
  const data = JSON.parse(document.getElementById("viewer-data").textContent);
  const policySelect = document.getElementById("viewer-policy");
  const signalSelect = document.getElementById("viewer-signal");
  const status = document.getElementById("viewer-status");
  const container = document.getElementById("viewer-responses");
  const policies = Object.keys(data.policies);
  for (const p of policies) policySelect.add(new Option(p, p));
  for (const c of data.columns) signalSelect.add(new Option(c, c));
  const fmt = (v) => (v === null ? "n/a" : Number(v).toPrecision(4));

  function chosen() {
    const h = new URLSearchParams(location.hash.slice(1));
    const policy = policies.includes(h.get("policy")) ? h.get("policy") : policies[0];
    const column = data.columns.includes(h.get("signal")) ? h.get("signal") : data.columns[0];
    return [policy, column];
  }

  function colour(v, lo, hi) {
    if (v === null) return "rgb(235, 235, 235)";
    const t = hi > lo ? (v - lo) / (hi - lo) : 0;
    return "rgb(255, " + Math.round(255 - 200 * t) + ", " + Math.round(255 - 215 * t) + ")";
  }

  function render() {
    const [policy, column] = chosen();
    policySelect.value = policy;
    signalSelect.value = column;
    const c = data.columns.indexOf(column);
    const responses = data.policies[policy] || [];
    let lo = Infinity, hi = -Infinity;
    for (const r of responses) for (const t of r.tokens) {
      const v = t[2 + c];
      if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    container.replaceChildren();
    for (const r of responses) {
      const box = document.createElement("div");
      box.className = "response";
      const head = document.createElement("div");
      head.className = "response-head";
      head.textContent = r.split + " · " + r.id + " · sample " + r.sample + " · " + (r.correct ? "correct" : "wrong") +
        " · " + r.question + " (answer " + r.answer + ")";
      box.appendChild(head);
      for (const t of r.tokens) {
        const span = document.createElement("span");
        const role = data.roles[t[1]];
        span.className = "tok role-" + role;
        span.textContent = t[0];
        span.dataset.value = t[2 + c] === null ? "" : String(t[2 + c]);
        span.style.backgroundColor = colour(t[2 + c], lo, hi);
        span.title = JSON.stringify(t[0]) + "  role: " + role + "\n" +
          data.columns.map((name, i) => name + " = " + fmt(t[2 + i])).join("\n");
        box.appendChild(span);
      }
      container.appendChild(box);
    }
    status.textContent = "colour: " + column + " on " + policy + " (" + responses.length + " responses, range " +
      fmt(isFinite(lo) ? lo : null) + " to " + fmt(isFinite(hi) ? hi : null) + ")";
    status.dataset.signal = column;
    status.dataset.policy = policy;
  }

  function choose() {
    location.hash = "policy=" + encodeURIComponent(policySelect.value) + "&signal=" + encodeURIComponent(signalSelect.value);
  }
  policySelect.addEventListener("change", choose);
  signalSelect.addEventListener("change", choose);
  window.addEventListener("hashchange", render);
  render();
})();
