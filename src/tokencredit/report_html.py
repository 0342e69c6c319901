"""index.html's token analysis and viewer, as sections of the report (tokencredit.document).

The page is self-contained (no server, no network, no CDN): after the summary come the token
analysis (tokencredit.analysis: tables and plots as base64 PNG) and a token viewer (its template:
templates/viewer.html.j2, viewer.js): sampled responses with
each token coloured by a signal or a method weight, chosen with a <select> or by the URL fragment
(`index.html#policy=sft&signal=signal.entropy`, read on load and on every change), its
ground-truth role underlined, and every value in the hover title. Plain HTML, CSS and JS.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pandas as pd

from tokencredit.analysis import REFERENCE, policy_order, reference_policy, signal_columns, weight_columns
from tokencredit.document import Image, Section, Table, Viewer
from tokencredit.params import AnalysisParams
from tokencredit.synthetic import ROLES

ROLE_COLORS = {"perception": "#1f77b4", "reasoning": "#ff7f0e", "format": "#b0b0b0", "noise": "#2ca02c"}


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _signed(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:+.{digits}f}"


def figure_png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


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


def _section(anchor: str, nav: str, title: str, text: str) -> Section:
    return Section(title, [text], anchor=anchor, nav=nav, html_only=True)


def auroc_section(analysis: dict) -> Section:
    section = _section("auroc", "AUROC", "Which tokens each signal finds: ground-truth AUROC",
             "AUROC of each signal for “the token is a perception token” and “… a reasoning token” on the sampled "
             "responses (roles by the synthetic task's labelling rule). 0.5 is chance, below 0.5 the signal points the other "
             f"way. Brackets: {analysis['confidence']:.0%} percentile bootstrap interval over responses.")  # fmt: skip
    policies = analysis["policies"]
    for split in analysis["splits"]:
        section.blocks.append(Image(f"AUROC per signal on {split}", auroc_figure(analysis["auroc"], split, policies, analysis["confidence"])))
        for role in ("perception", "reasoning"):
            found = {(r["signal"], r["policy"]): r for r in analysis["auroc"] if r["split"] == split and r["role"] == role and r["family"] == "all"}
            rows = [[signal, *(_auroc_cell(found.get((signal, p))) for p in policies)] for signal in analysis["signals"]]
            section.blocks.append(Table(["signal", *policies], rows, f"{split}: AUROC for {role} tokens"))
        families = sorted({r["family"] for r in analysis["auroc"] if r["split"] == split} - {"all"})
        if families:
            reference = reference_policy(analysis["policies"])
            for role in ("perception", "reasoning"):
                found = {(r["signal"], r["family"]): r for r in analysis["auroc"] if r["split"] == split and r["role"] == role and r["policy"] == reference}
                rows = [[signal, *(_auroc_cell(found.get((signal, f))) for f in families)] for signal in analysis["signals"]]
                section.blocks.append(Table(["signal", *families], rows, f"{split}, {reference}: AUROC for {role} tokens per question family"))
    return section


def _auroc_cell(row: dict | None) -> str:
    if row is None or row["auroc"] is None:
        return "–"
    return f"{row['auroc']:.3f} [{_num(row['ci_low'])}, {_num(row['ci_high'])}]"


def precision_section(analysis: dict) -> Section:
    reference = reference_policy(analysis["policies"])
    section = _section("precision", "precision", "Precision at each method's selection ratio",
             f"Policy {reference}. For each method, r is the share of tokens it selects (weights above its "
             "average weight); each cell is the share of perception (or reasoning) tokens among the top r tokens of the signal. "
             "The base rate is what a random choice of tokens gets.")  # fmt: skip
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
                section.blocks.append(Table(header, body, f"{split}, {family}: precision for {role} tokens (base rate {base:.3f})"))
    return section


def selection_section(analysis: dict) -> Section:
    reference = reference_policy(analysis["policies"])
    section = _section("selection", "sparsity", "Sparsity: what each method selects",
             "Share of tokens with weight > 0, with weight > 1 (boosted), and selected (weight above the method's "
             "average: its kept, boosted or anchor tokens), and the share of perception and reasoning tokens among the "
             "selected ones. AT-RL reports ≈ 15 % anchor tokens.")  # fmt: skip
    for split in analysis["splits"]:
        rows = [r for r in analysis["selection"] if r["split"] == split and r["family"] == "all"]
        mine = [r for r in rows if r["policy"] == reference]
        body = [[r["method"], _num(r["positive"]), _num(r["boosted"]), _num(r["selected"]), _num(r["precision_perception"]), _num(r["precision_reasoning"])] for r in mine]
        section.blocks.append(Table(["method", "w > 0", "w > 1", "selected", "precision: perception", "precision: reasoning"], body, f"{split}, {reference}"))
        found = {(r["method"], r["policy"]): r["selected"] for r in rows}
        body = [[m, *(_num(found.get((m, p))) for p in analysis["policies"])] for m in analysis["methods"]]
        section.blocks.append(Table(["method", *analysis["policies"]], body, f"{split}: share of tokens selected, per policy"))
    return section


def jaccard_section(analysis: dict) -> Section:
    reference = reference_policy(analysis["policies"])
    section = _section("overlap", "overlap", "Overlap between the methods' selected tokens (Jaccard)",
                       f"|A ∩ B| / |A ∪ B| of the selected sets on the same tokens, policy {reference}.")
    for entry in analysis["jaccard"]:
        if entry["policy"] != reference:
            continue
        methods = entry["methods"]
        section.blocks.append(Image("Jaccard overlap", heatmap_figure(entry["matrix"], methods, methods, f"{entry['split']}: Jaccard of selected sets", 0, 1)))
        section.blocks.append(Table(["", *methods], [[m, *(_num(v, 2) for v in row)] for m, row in zip(methods, entry["matrix"])], entry["split"]))
    return section


def shift_section(analysis: dict) -> Section:
    section = _section("shift", "signal shift", "How the signals shift from SFT to the trained policies",
             f"Mean of each signal over all tokens, and its concentration: the share of a response's signal mass on its top "
             f"{analysis['top_fraction']:.0%} tokens (for non-negative signals; sharper anchors raise it). In brackets: change from "
             f"{REFERENCE} on the same split.")  # fmt: skip
    policies = analysis["policies"]
    for split in analysis["splits"]:
        found = {(r["signal"], r["policy"]): r for r in analysis["shift"] if r["split"] == split}
        for key, what in (("mean", "mean"), ("concentration", "concentration"), ("auroc_perception", "AUROC for perception tokens")):
            body = [[s, *(_shift_cell(found.get((s, p)), key) for p in policies)] for s in analysis["signals"]]
            section.blocks.append(Table(["signal", *policies], body, f"{split}: {what}"))
        matrix = [[(found.get((s, p)) or {}).get("concentration") for p in policies] for s in analysis["signals"]]
        if any(v is not None for row in matrix for v in row):
            section.blocks.append(Image("concentration", heatmap_figure(matrix, analysis["signals"], policies, f"{split}: concentration on the top {analysis['top_fraction']:.0%} tokens")))
    return section


def _shift_cell(row: dict | None, key: str) -> str:
    if row is None or row[key] is None:
        return "–"
    delta = row.get(f"{key}_delta")
    return _num(row[key]) if delta is None or row["policy"] == REFERENCE else f"{_num(row[key])} ({_signed(delta)})"


def accuracy_section(analysis: dict) -> Section:
    body = [[r["policy"], r["split"], _num(r["greedy_accuracy"]), _num(r["greedy_accuracy_no_image"]), _signed(r["image_gain"]), _num(r["sampled_accuracy"])]
            for r in analysis["accuracy"]]  # fmt: skip
    section = _section("accuracy", "image vs no image", "Accuracy with and without the image",
                       "Greedy accuracy from the evaluations, with the image and with it removed; the gain is how much "
                       "the policy really looks. Sampled: mean accuracy of the scored samples.")  # fmt: skip
    section.blocks.append(Table(["policy", "split", "greedy, image", "greedy, no image", "gain", "sampled"], body))
    return section


def present_roles(analysis: dict) -> list[str]:
    """The roles the scored tokens have (noise only on a task with noise words)."""
    return [role for role in ROLES if any(r[role] for r in analysis["roles"])]


def roles_section(analysis: dict) -> Section:
    roles = present_roles(analysis)
    body = [[r["policy"], r["split"], r["family"], str(r["n_responses"]), str(r["n_tokens"]), *(_num(r[role]) for role in roles)]
            for r in analysis["roles"]]  # fmt: skip
    section = _section("roles", "token roles", "Scored tokens and their ground-truth roles",
                       "The sampled text is labelled by the rule that labels the synthetic targets: words of the object "
                       "listing in <think> before its “.” are perception, words after it and the answer are reasoning, "
                       "tags are format, noise words (data.noise_words) noise.")  # fmt: skip
    section.blocks.append(Table(["policy", "split", "family", "responses", "tokens", *roles], body))
    return section


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


def analysis_sections(analysis: dict, scores: pd.DataFrame, params: AnalysisParams) -> list[Section]:
    """index.html's sections after the summary: the token analysis, then the token viewer."""
    legend = {role: ROLE_COLORS[role] for role in present_roles(analysis)}
    viewer = Viewer(viewer_data(scores, params.viewer_responses, params.seed), legend)
    sections = [roles_section, auroc_section, precision_section, selection_section, jaccard_section, shift_section, accuracy_section]
    return [
        Section("Token analysis", level=1, html_only=True),
        *(section(analysis) for section in sections),
        Section("Token viewer", [viewer], anchor="viewer", nav="token viewer", html_only=True),
    ]
