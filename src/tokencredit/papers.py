"""Figures reported in the methods' papers (METHODS.md §5), for the report's "papers" table.

They come from different models and benchmarks than this project's runs: context, not targets.
Each entry: source, model, benchmark and metric, the (label, value) results in the order
reported (baseline first), and a note. Values are percentages unless the label says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperResult:
    source: str
    model: str
    benchmark: str
    results: tuple[tuple[str, float], ...]
    note: str = ""
    decimals: int = 1  # as printed in the paper


def _tor(benchmark: str, grpo: float, tor_grpo: float, dapo: float, tor_dapo: float) -> PaperResult:
    return PaperResult(
        "ToR (Lu et al.)",
        "Qwen2.5-VL-7B, trained on Geometry3K",
        f"{benchmark}, greedy",
        (("GRPO", grpo), ("ToR-GRPO", tor_grpo), ("DAPO", dapo), ("ToR-DAPO", tor_dapo)),
    )


PAPER_RESULTS: tuple[PaperResult, ...] = (
    _tor("MathVerse", 50.8, 53.0, 50.6, 53.4),
    _tor("MathVision", 27.3, 28.6, 26.5, 27.9),
    _tor("MathVista", 70.5, 71.9, 70.3, 72.6),
    _tor("WeMath", 67.4, 68.9, 69.3, 72.1),
    _tor("HallusionBench", 69.8, 72.4, 67.9, 71.8),
    PaperResult(
        "VPPO (Huang et al.)",
        "Qwen2.5-VL-7B",
        "avg@8 over 8 benchmarks",
        (("GRPO", 53.1), ("DAPO", 55.0), ("VPPO", 57.5)),
        "training overhead +9.7 %",
    ),
    PaperResult(
        "VPPO (Huang et al.)",
        "Qwen2.5-VL-32B",
        "avg@8 over 8 benchmarks",
        (("GRPO", 62.6), ("DAPO", 63.5), ("VPPO", 64.6)),
        "training overhead +10.0 %",
    ),
    PaperResult(
        "PGPO (Ye et al.)",
        "Qwen2.5-VL-7B",
        "average over benchmarks",
        (("GRPO", 50.90), ("DAPO", 52.69), ("VPPO", 54.08), ("PGPO", 54.70)),
        decimals=2,
    ),
    PaperResult(
        "PGPO (Ye et al.)",
        "Qwen2.5-VL-3B",
        "average over benchmarks",
        (("GRPO", 43.77), ("DAPO", 43.84), ("VPPO", 45.31), ("PGPO", 46.00)),
        "training overhead +10.6 % (3B)",
        decimals=2,
    ),
    PaperResult(
        "AT-RL (Jiao et al.)",
        "32B",
        "MathVista",
        (("AT-RL", 80.2),),
        "≈15 % anchor tokens, +1.2 % overhead",
    ),
    PaperResult(
        "80/20 (Wang et al.)",
        "Qwen3-32B (text only)",
        "average over AIME etc.",
        (("gain of training on the top-20 % entropy tokens over all tokens, points", 4.1),),
    ),
)

# Benchmark adapters (tokencredit.sources) whose papers report per-benchmark figures, and the
# name the papers give them.
SOURCE_LABELS = {
    "mathverse": "MathVerse",
    "mathvision": "MathVision",
    "mathvista": "MathVista",
    "wemath": "WeMath",
    "hallusionbench": "HallusionBench",
}


def reported_for(source: str) -> list[PaperResult]:
    """The papers' figures on the benchmark an adapter reads (empty when none were reported)."""
    label = SOURCE_LABELS.get(source)
    return [paper for paper in PAPER_RESULTS if label and paper.benchmark.split(",")[0] == label]
