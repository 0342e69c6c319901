"""results/report/index.html: one self-contained page (no server, no network, no CDN).

It holds the summary (summary.md rendered, its curves embedded), the token analysis
(tokencredit.analysis: tables and plots as base64 PNG) and a token viewer: sampled responses with
each token coloured by a signal or a method weight, chosen with a <select> or by the URL fragment
(`index.html#policy=sft&signal=signal.entropy`, read on load and on every change), its
ground-truth role underlined, and every value in the hover title. Plain HTML, CSS and JS.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tokencredit.analysis import REFERENCE, policy_order, signal_columns, weight_columns
from tokencredit.atomic import write_text
from tokencredit.synthetic import ROLES

ROLE_COLORS = {"perception": "#1f77b4", "reasoning": "#ff7f0e", "format": "#b0b0b0"}


# -- building blocks ---------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _signed(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:+.{digits}f}"


def table(header: list[str], rows: list[list[str]], caption: str = "") -> str:
    """An HTML table; cells are escaped text."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>\n'


def _cell(text: str) -> str:
    numeric = re.match(r"^[-+–]?[\d.]", text) is not None  # numbers align right, text left
    return f'<td class="num">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>"


def png_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">\n'


def figure_png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def markdown_html(md: str, images: dict[str, bytes]) -> str:
    """The markdown summary.md uses: headings, pipe tables, image lines (embedded), paragraphs."""
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            out.append(table(block[0], block[2:]))  # block[1] is the |---| separator
            continue
        heading = re.match(r"^(#{1,6}) (.*)$", line)
        image = re.match(r"^!\[(.*)\]\((.*)\)$", line)
        if heading:
            level = len(heading[1])
            out.append(f"<h{level}>{_inline(heading[2])}</h{level}>")
        elif image and image[2] in images:
            out.append(png_tag(images[image[2]], image[1]))
        elif line:
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out) + "\n"


# -- figures -----------------------------------------------------------------------------------------


def auroc_figure(rows: list[dict], split: str, policies: list[str], confidence: float) -> bytes:
    """AUROC per signal with its interval, one panel per role, one marker per policy."""
    from matplotlib.figure import Figure  # no pyplot: no global backend

    rows = [r for r in rows if r["split"] == split and r["family"] == "all"]
    signals = list(dict.fromkeys(r["signal"] for r in rows))
    fig = Figure(figsize=(max(6, len(signals) * (0.3 + 0.06 * len(policies))), 7), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / max(1, len(policies))
    for ax, role in zip(axes, ("perception", "reasoning")):
        for k, policy in enumerate(policies):
            found = {r["signal"]: r for r in rows if r["policy"] == policy and r["role"] == role}
            x = np.arange(len(signals)) - 0.4 + (k + 0.5) * width
            y = [found[s]["auroc"] if s in found and found[s]["auroc"] is not None else np.nan for s in signals]
            low = [y_ - (found[s]["ci_low"] if s in found and found[s]["ci_low"] is not None else y_) for s, y_ in zip(signals, y)]
            high = [(found[s]["ci_high"] if s in found and found[s]["ci_high"] is not None else y_) - y_ for s, y_ in zip(signals, y)]
            ax.errorbar(x, y, yerr=[low, high], fmt="o", markersize=3, capsize=1.5, label=policy, color="black" if policy == REFERENCE else None)
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
        ax.set(ylabel=f"AUROC: {role}", ylim=(0, 1))
    axes[1].set_xticks(np.arange(len(signals)), signals, rotation=60, ha="right", fontsize="small")
    axes[0].set_title(f"{split}: ground-truth AUROC per signal, {confidence:.0%} bootstrap interval over responses", fontsize="small")
    axes[0].legend(fontsize="x-small", ncol=3)
    return figure_png(fig)


def heatmap_figure(matrix: list[list[float | None]], rows: list[str], columns: list[str], title: str, vmin: float | None = None, vmax: float | None = None) -> bytes:
    from matplotlib.figure import Figure

    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    fig = Figure(figsize=(max(5, 0.5 * len(columns) + 3), max(3, 0.35 * len(rows) + 1.5)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(np.arange(len(columns)), columns, rotation=60, ha="right", fontsize="small")
    ax.set_yticks(np.arange(len(rows)), rows, fontsize="small")
    for (i, j), v in np.ndenumerate(values):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize="xx-small", color="white" if v < np.nanmean(values) else "black")
    fig.colorbar(image, ax=ax)
    ax.set_title(title, fontsize="small")
    return figure_png(fig)


# -- sections ----------------------------------------------------------------------------------------


def _reference(analysis: dict) -> str:
    return REFERENCE if REFERENCE in analysis["policies"] else analysis["policies"][0]


def auroc_section(analysis: dict) -> str:
    parts = ["<h2 id=\"auroc\">Which tokens each signal finds: ground-truth AUROC</h2>",
             "<p>AUROC of each signal for “the token is a perception token” and “… a reasoning token” on the sampled "
             "responses (roles by the synthetic task's labelling rule). 0.5 is chance, below 0.5 the signal points the other "
             f"way. Brackets: {analysis['confidence']:.0%} percentile bootstrap interval over responses.</p>"]  # fmt: skip
    policies = analysis["policies"]
    for split in analysis["splits"]:
        parts.append(png_tag(auroc_figure(analysis["auroc"], split, policies, analysis["confidence"]), f"AUROC per signal on {split}"))
        for role in ("perception", "reasoning"):
            found = {(r["signal"], r["policy"]): r for r in analysis["auroc"] if r["split"] == split and r["role"] == role and r["family"] == "all"}
            rows = [[signal, *(_auroc_cell(found.get((signal, p))) for p in policies)] for signal in analysis["signals"]]
            parts.append(table(["signal", *policies], rows, f"{split}: AUROC for {role} tokens"))
        families = sorted({r["family"] for r in analysis["auroc"] if r["split"] == split} - {"all"})
        if families:
            reference = _reference(analysis)
            for role in ("perception", "reasoning"):
                found = {(r["signal"], r["family"]): r for r in analysis["auroc"] if r["split"] == split and r["role"] == role and r["policy"] == reference}
                rows = [[signal, *(_auroc_cell(found.get((signal, f))) for f in families)] for signal in analysis["signals"]]
                parts.append(table(["signal", *families], rows, f"{split}, {reference}: AUROC for {role} tokens per question family"))
    return "\n".join(parts)


def _auroc_cell(row: dict | None) -> str:
    if row is None or row["auroc"] is None:
        return "–"
    return f"{row['auroc']:.3f} [{_num(row['ci_low'])}, {_num(row['ci_high'])}]"


def precision_section(analysis: dict) -> str:
    reference = _reference(analysis)
    parts = ["<h2 id=\"precision\">Precision at each method's selection ratio</h2>",
             f"<p>Policy {html.escape(reference)}. For each method, r is the share of tokens it selects (weights above its "
             "average weight); each cell is the share of perception (or reasoning) tokens among the top r tokens of the signal. "
             "The base rate is what a random choice of tokens gets.</p>"]  # fmt: skip
    for split in analysis["splits"]:
        for family in sorted({r["family"] for r in analysis["precision"] if r["split"] == split}, key=lambda f: (f != "all", f)):
            rows = [r for r in analysis["precision"] if r["split"] == split and r["policy"] == reference and r["family"] == family]
            if not rows:
                continue
            ratios = {r["method"]: r["ratio"] for r in rows}
            for role in ("perception", "reasoning"):
                found = {(r["signal"], r["method"]): r["precision"] for r in rows if r["role"] == role}
                base = next(r["base_rate"] for r in rows if r["role"] == role)
                body = [[s, *(_num(found.get((s, m))) for m in ratios)] for s in analysis["signals"]]
                header = ["signal", *(f"{m} (r={ratios[m]:.2f})" for m in ratios)]
                parts.append(table(header, body, f"{split}, {family}: precision for {role} tokens (base rate {base:.3f})"))
    return "\n".join(parts)


def selection_section(analysis: dict) -> str:
    reference = _reference(analysis)
    parts = ["<h2 id=\"selection\">Sparsity: what each method selects</h2>",
             "<p>Share of tokens with weight &gt; 0, with weight &gt; 1 (boosted), and selected (weight above the method's "
             "average: its kept, boosted or anchor tokens), and the share of perception and reasoning tokens among the "
             "selected ones. AT-RL reports ≈ 15 % anchor tokens.</p>"]  # fmt: skip
    for split in analysis["splits"]:
        rows = [r for r in analysis["selection"] if r["split"] == split and r["family"] == "all"]
        mine = [r for r in rows if r["policy"] == reference]
        body = [[r["method"], _num(r["positive"]), _num(r["boosted"]), _num(r["selected"]), _num(r["precision_perception"]), _num(r["precision_reasoning"])] for r in mine]
        parts.append(table(["method", "w > 0", "w > 1", "selected", "precision: perception", "precision: reasoning"], body, f"{split}, {reference}"))
        found = {(r["method"], r["policy"]): r["selected"] for r in rows}
        body = [[m, *(_num(found.get((m, p))) for p in analysis["policies"])] for m in analysis["methods"]]
        parts.append(table(["method", *analysis["policies"]], body, f"{split}: share of tokens selected, per policy"))
    return "\n".join(parts)


def jaccard_section(analysis: dict) -> str:
    reference = _reference(analysis)
    parts = ["<h2 id=\"overlap\">Overlap between the methods' selected tokens (Jaccard)</h2>",
             f"<p>|A ∩ B| / |A ∪ B| of the selected sets on the same tokens, policy {html.escape(reference)}.</p>"]
    for entry in analysis["jaccard"]:
        if entry["policy"] != reference:
            continue
        methods = entry["methods"]
        parts.append(png_tag(heatmap_figure(entry["matrix"], methods, methods, f"{entry['split']}: Jaccard of selected sets", 0, 1), "Jaccard overlap"))
        parts.append(table(["", *methods], [[m, *(_num(v, 2) for v in row)] for m, row in zip(methods, entry["matrix"])], entry["split"]))
    return "\n".join(parts)


def shift_section(analysis: dict) -> str:
    parts = ["<h2 id=\"shift\">How the signals shift from SFT to the trained policies</h2>",
             f"<p>Mean of each signal over all tokens, and its concentration: the share of a response's signal mass on its top "
             f"{analysis['top_fraction']:.0%} tokens (for non-negative signals; sharper anchors raise it). In brackets: change from "
             f"{REFERENCE} on the same split.</p>"]  # fmt: skip
    policies = analysis["policies"]
    for split in analysis["splits"]:
        found = {(r["signal"], r["policy"]): r for r in analysis["shift"] if r["split"] == split}
        for key, what in (("mean", "mean"), ("concentration", "concentration"), ("auroc_perception", "AUROC for perception tokens")):
            body = [[s, *(_shift_cell(found.get((s, p)), key) for p in policies)] for s in analysis["signals"]]
            parts.append(table(["signal", *policies], body, f"{split}: {what}"))
        matrix = [[(found.get((s, p)) or {}).get("concentration") for p in policies] for s in analysis["signals"]]
        if any(v is not None for row in matrix for v in row):
            parts.append(png_tag(heatmap_figure(matrix, analysis["signals"], policies, f"{split}: concentration on the top {analysis['top_fraction']:.0%} tokens"), "concentration"))
    return "\n".join(parts)


def _shift_cell(row: dict | None, key: str) -> str:
    if row is None or row[key] is None:
        return "–"
    delta = row.get(f"{key}_delta")
    return _num(row[key]) if delta is None or row["policy"] == REFERENCE else f"{_num(row[key])} ({_signed(delta)})"


def accuracy_section(analysis: dict) -> str:
    body = [[r["policy"], r["split"], _num(r["greedy_accuracy"]), _num(r["greedy_accuracy_no_image"]), _signed(r["image_gain"]), _num(r["sampled_accuracy"])]
            for r in analysis["accuracy"]]  # fmt: skip
    return (
        "<h2 id=\"accuracy\">Accuracy with and without the image</h2>"
        "<p>Greedy accuracy from the evaluations, with the image and with it removed; the gain is how much the policy "
        "really looks. Sampled: mean accuracy of the scored samples.</p>"
        + table(["policy", "split", "greedy, image", "greedy, no image", "gain", "sampled"], body)
    )


def roles_section(analysis: dict) -> str:
    body = [[r["policy"], r["split"], r["family"], str(r["n_responses"]), str(r["n_tokens"]), _num(r["perception"]), _num(r["reasoning"]), _num(r["format"])]
            for r in analysis["roles"]]  # fmt: skip
    return (
        "<h2 id=\"roles\">Scored tokens and their ground-truth roles</h2>"
        "<p>The sampled text is labelled by the rule that labels the synthetic targets: words of the object listing in "
        "&lt;think&gt; before its “.” are perception, words after it and the answer are reasoning, tags are format.</p>"
        + table(["policy", "split", "family", "responses", "tokens", "perception", "reasoning", "format"], body)
    )


# -- token viewer ------------------------------------------------------------------------------------


def _round(x: float) -> float | None:
    return None if not math.isfinite(x) else float(f"{x:.4g}")


def viewer_data(scores: pd.DataFrame, n_responses: int, seed: int) -> dict[str, Any]:
    """Responses for the viewer: per policy and split, sample 0 of the same `n_responses` prompts.

    Tokens are [text, role index, value per column], values rounded to 4 significant digits.
    """
    columns = signal_columns(scores) + weight_columns(scores)
    rng = np.random.default_rng(seed)
    policies: dict[str, list[dict]] = {}
    for split, part in scores.groupby("split", sort=True):
        ids = sorted(part["id"].unique())
        chosen = set(rng.choice(ids, size=min(n_responses, len(ids)), replace=False).tolist())
        first = part[part["id"].isin(chosen) & (part["sample"] == part.groupby("id")["sample"].transform("min"))]
        for policy in sorted(first["policy"].unique(), key=policy_order):
            for (_, row_id), tokens in first[first["policy"] == policy].groupby(["response", "id"], sort=True):
                head = tokens.iloc[0]
                values = tokens[columns].to_numpy(dtype=float)
                policies.setdefault(policy, []).append({
                    "split": split, "id": row_id, "sample": int(head["sample"]), "question": str(head.get("question", "")),
                    "answer": str(head.get("answer", "")), "correct": bool(head["accuracy_reward"] > 0),
                    "tokens": [[t, ROLES.index(r), *map(_round, v)] for t, r, v in zip(tokens["token"], tokens["role"], values)],
                })  # fmt: skip
    return {"columns": columns, "roles": list(ROLES), "policies": policies}


VIEWER_HTML = """
<h2 id="viewer">Token viewer</h2>
<p>Sampled responses (sample 0 of the same prompts for every policy). Colour: the chosen signal or method weight,
white (lowest on this policy's shown tokens) to red (highest). Underline: ground-truth role
<span class="tok role-perception">perception</span> <span class="tok role-reasoning">reasoning</span>
<span class="tok role-format">format</span>. Hover a token for all its values. The choice is kept in the URL
(<code>#policy=…&amp;signal=…</code>), so a view can be linked.</p>
<p><label>policy <select id="viewer-policy"></select></label>
<label>colour by <select id="viewer-signal"></select></label></p>
<p id="viewer-status"></p>
<div id="viewer-responses"></div>
"""

VIEWER_JS = """
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
        span.title = JSON.stringify(t[0]) + "  role: " + role + "\\n" +
          data.columns.map((name, i) => name + " = " + fmt(t[2 + i])).join("\\n");
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
"""

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.85em; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; white-space: nowrap; }
td.num { text-align: right; }
thead th { background: #f3f3f3; }
.scroll { overflow-x: auto; }
img { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2em; }
.response { font-family: ui-monospace, monospace; margin: 0.5em 0; padding: 0.4em; border: 1px solid #ddd; white-space: pre-wrap; }
.response-head { font-family: system-ui, sans-serif; font-size: 0.8em; color: #555; margin-bottom: 0.3em; }
.tok { border-bottom: 3px solid transparent; }
""" + "".join(f".role-{role} {{ border-bottom-color: {color}; }}\n" for role, color in ROLE_COLORS.items())


def _json_script(element_id: str, payload: Any) -> str:
    """JSON inside <script>: "</" is escaped so no string can close the element."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def render_index(summary_md: str, images: dict[str, bytes], analysis: dict | None, viewer: dict | None) -> str:
    sections = [markdown_html(summary_md, images)]
    nav = []
    if analysis is not None:
        nav = [("roles", "token roles"), ("auroc", "AUROC"), ("precision", "precision"), ("selection", "sparsity"),
               ("overlap", "overlap"), ("shift", "signal shift"), ("accuracy", "image vs no image"), ("viewer", "token viewer")]  # fmt: skip
        sections += ["<h1>Token analysis</h1>", roles_section(analysis), auroc_section(analysis), precision_section(analysis),
                     selection_section(analysis), jaccard_section(analysis), shift_section(analysis), accuracy_section(analysis)]  # fmt: skip
    if viewer is not None:
        sections += [VIEWER_HTML, _json_script("viewer-data", viewer), f"<script>{VIEWER_JS}</script>"]
    links = " ".join(f'<a href="#{anchor}">{html.escape(label)}</a>' for anchor, label in nav)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>tokencredit report</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n<nav>{links}</nav>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def write_index(path: Path, summary_md: str, images: dict[str, bytes], analysis: dict | None, viewer: dict | None) -> None:
    write_text(path, render_index(summary_md, images, analysis, viewer))
