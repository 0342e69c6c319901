"""Graders: answer extraction, equivalence by answer type and by each release's number rule, avg@k,
the official scorers' metrics (HallusionBench, We-Math, DynaMath) against figures worked out by
hand, and a benchmark graded end to end with a tiny model."""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tokencredit.evaluation import grade_completions
from tokencredit.graders import (
    accuracy_reward,
    avg_at_k,
    dynamath_metrics,
    hallusion_accuracies,
    is_correct,
    wemath_metrics,
)

MC = ("30°", "60°", "90°", "120°")


def test_accuracy_follows_the_answer_format():
    """The defects of issue 23: with the boxed prompt a tag inside the thinking no longer wins, and
    a correct boxed answer earns the full 0.9 accuracy + 0.1 format of the papers' recipe."""
    from tokencredit.rewards import format_reward

    response = "<think>maybe <answer>3</answer> no</think> \\boxed{5}"
    assert accuracy_reward([response] * 2, answer=["5", "3"], answer_type=["integer"] * 2, answer_format=["boxed"] * 2) == [1.0, 0.0]
    assert accuracy_reward([response], answer=["3"], answer_type=["integer"], answer_format=["tags"]) == [0.0]
    correct = "<think>2 + 3</think> The answer is \\boxed{5}."
    total = 0.9 * accuracy_reward([correct], answer=["5"], answer_type=["integer"], answer_format=["boxed"])[0]
    total += 0.1 * format_reward([correct], answer_format=["boxed"])[0]
    assert total == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("prediction", "answer", "answer_type", "expected"),
    [
        ("2.0", "2", "integer", True),
        ("3", "2", "integer", False),
        ("0.5", "\\frac{1}{2}", "number", True),
        ("\\sqrt{12}", "2\\sqrt{3}", "expression", True),
        ("x+1", "1+x", "expression", True),
        ("x+2", "1+x", "expression", False),
        ("2", "2\\sqrt{3}", "expression", False),  # bare text, math-verify would read 2\sqrt{3} as 2
        ("\\frac{3}{2}", "3", "integer", False),
        ("Paris", "paris", "free_form", True),
        ("Yes.", "yes", "yes_no", True),
        ("No, it is not", "no", "yes_no", True),
        ("yes", "no", "yes_no", False),
        ("maybe", "yes", "yes_no", False),
        (None, "2", "integer", False),
        ("2", "2", "integer", True),
        ("\\frac{4}{2}", "2", "integer", True),
        ("two", "2", "integer", False),
        ("", "2", "integer", False),
        ("Yes", "yes", "yes_no", True),
        (" no. ", "no", "yes_no", True),
        ("1", "yes", "yes_no", False),
    ],
)
def test_equivalence_by_answer_type(prediction, answer, answer_type, expected):
    assert is_correct(prediction, answer, answer_type) is expected


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [("B", True), ("(B)", True), ("b", True), ("\\text{B}", True), ("Option B", True), ("B: 60°", True),
     ("60°", True), ("60", True), ("C", False), ("90°", False), ("sixty", False)],
)  # fmt: skip
def test_multiple_choice_by_letter_or_option_text(prediction, expected):
    assert is_correct(prediction, "B", "multiple_choice", MC) is expected


def test_multiple_choice_letter_sets_and_missing_options():
    assert is_correct("C, A", "A, C", "multiple_choice")
    assert is_correct("A and C", "A, C", "multiple_choice")
    assert not is_correct("A", "A, C", "multiple_choice")
    assert not is_correct("60°", "B", "multiple_choice")  # option text without options to match


def test_unknown_answer_type_is_an_error():
    with pytest.raises(ValueError, match="unknown answer_type 'essay'"):
        is_correct("x", "x", "essay")


def test_avg_at_k_and_rewards():
    assert avg_at_k([1, 0, 1, 1]) == 0.75
    with pytest.raises(ValueError):
        avg_at_k([])
    completions = [[{"role": "assistant", "content": "<think>t</think> \\boxed{B}"}], "<think>t</think> \\boxed{2.0}", "\\boxed{90°}"]
    rewards = accuracy_reward(
        completions, answer=["B", "2", "B"], answer_type=["multiple_choice", "integer", "multiple_choice"], choices=[MC, [], MC], answer_format=["boxed"] * 3
    )
    assert rewards == [1.0, 1.0, 0.0]
    assert accuracy_reward(["\\boxed{yes}"], answer=["yes"], answer_type=["yes_no"], answer_format=["boxed"]) == [1.0]
    assert accuracy_reward(["\\boxed{yes}"], answer=["yes"], answer_type=["yes_no"]) == [0.0]  # no column: tags


def hallusion_rows() -> list[dict]:
    """Two VD figures of one question pair, and a VS set asked without (figure 0) and with a figure."""
    def meta(category, figure, question):
        return {"category": category, "subcategory": "chart", "set_id": "0", "figure_id": figure, "question_id": question}

    return [meta("VD", "0", "0"), meta("VD", "0", "1"), meta("VD", "1", "0"), meta("VS", "0", "0"), meta("VS", "1", "0")]


def test_hallusion_accuracies_follow_the_release():
    correct = [1, 1, 0, 0, 1]
    metrics = hallusion_accuracies(hallusion_rows(), correct, ["yes", "yes", "yes", "no", "yes"])
    assert metrics["aAcc"] == pytest.approx(3 / 5)
    # Figures: VD fig 0 (both right), VD fig 1 (wrong), VS fig 1 (right); VS figure 0 is no figure.
    assert metrics["fAcc"] == pytest.approx(2 / 3)
    # Pairs: VD q0 (fig 0 right, fig 1 wrong), VD q1 (right), VS q0 (no-figure wrong).
    assert metrics["qAcc"] == pytest.approx(1 / 3)
    assert hallusion_accuracies(hallusion_rows(), [1] * 5, ["yes"] * 5) == {"aAcc": 1.0, "fAcc": 1.0, "qAcc": 1.0}


def test_hallusion_uncertain_answer_without_the_figure_is_right():
    """utils.assign_correctness: a VS question asked without its figure is right when unsure."""
    uncertain = hallusion_accuracies(hallusion_rows(), [1, 1, 0, 0, 1], ["yes", "yes", "yes", "it cannot be determined", "yes"])
    # The VS no-figure row is now right: 4/5 questions; pairs VD q1 and VS q0 (both figures right).
    assert uncertain == {"aAcc": pytest.approx(4 / 5), "fAcc": pytest.approx(2 / 3), "qAcc": pytest.approx(2 / 3)}
    # Unsure with a figure (the VD fig 1 row) stays wrong, and no extracted answer is not "unsure".
    assert hallusion_accuracies(hallusion_rows(), [1, 1, 0, 0, 1], ["yes", "yes", "unsure", None, "yes"])["aAcc"] == pytest.approx(3 / 5)


def wemath_rows(parts: dict[str, list[int]]) -> tuple[list[dict], list[int]]:
    """We-Math rows of problems named "<steps>_<n>" with their sub-question and whole answers (multi last)."""
    metadata, correct = [], []
    for problem, marks in parts.items():
        steps = problem.split("_")[0]
        names = [str(i) for i in range(1, len(marks))] + ["multi"]
        for name, mark in zip(names, marks):
            metadata.append({"ID": problem, "key": f"{steps}_{name}"})
            correct.append(mark)
    return metadata, correct


def test_wemath_four_dimensions_and_scores_by_hand():
    metadata, correct = wemath_rows({
        "2steps_1": [1, 1, 1],  # complete mastery, strict and loose
        "2steps_2": [1, 0, 1],  # loose mastery; strict: rote memorisation
        "2steps_3": [0, 0, 1],  # rote memorisation, strict and loose
        "3steps_1": [1, 1, 1, 0],  # inadequate generalisation
        "3steps_2": [1, 0, 1, 0],  # insufficient knowledge
    })  # fmt: skip
    metadata.append({"ID": "3steps_3", "key": "3steps_1"})  # an incomplete problem is left out
    correct.append(1)
    metrics = wemath_metrics(metadata, correct, [None] * len(correct))
    assert metrics == pytest.approx({
        "IK": 1 / 5, "IG": 1 / 5, "CM_strict": 1 / 5, "CM_loose": 2 / 5,
        "RM_strict": 2 / 3, "RM_loose": 1 / 3,  # shares of CM + RM: 2 / (1 + 2) and 1 / (2 + 1)
        "score_strict": (5 - 0.5 * 1 - 2 - 1) / 5, "score_loose": (5 - 0.5 * 1 - 1 - 1) / 5,
    })  # fmt: skip


def test_dynamath_average_and_worst_case_over_variants():
    metadata = [{"seed": seed, "variant": v} for seed in ("1", "2") for v in (1, 2, 3)]
    metrics = dynamath_metrics(metadata, [1, 1, 1, 1, 0, 1], [None] * 6)
    assert metrics == {"average": pytest.approx(5 / 6), "worst_case": 0.5}


@pytest.mark.parametrize(
    ("prediction", "answer", "rule", "expected"),
    [
        ("1.54", "1.5", {"precision": 1.0}, True),  # MathVista rounds the prediction to `precision`
        ("1.54", "1.5", {}, False),
        ("0.6667", "0.67", {"precision": 2.0}, True),
        ("1.45", "1.5", {"precision": 1.0}, False),
        ("3.1425", "3.142", {"tolerance": 0.001}, True),  # DynaMath: |prediction - answer| <= 0.001
        ("π", "3.142", {"tolerance": 0.001}, True),
        ("3.14", "3.142", {"tolerance": 0.001}, False),
        ("3.1425", "3.142", {}, False),
        ("\\frac{3}{2}", "1.5", {"precision": 1.0}, True),  # not a plain number: math-verify
    ],
)
def test_release_number_rules(prediction, answer, rule, expected):
    assert is_correct(prediction, answer, "number", **rule) is expected


def benchmark_frame(source: str, rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"id": str(i), "split": "b", "source": source, "family": r.get("family", "f"), "question": "q?", "image": "", "images": [],
          "answer": r["answer"], "answer_type": r["answer_type"], "choices": r.get("choices", []), "metadata": json.dumps(r.get("metadata", {})),
          "answer_format": "boxed"}
         for i, r in enumerate(rows)]
    )  # fmt: skip


def test_grade_benchmark_record():
    frame = benchmark_frame("mathvista", [
        {"answer": "B", "answer_type": "multiple_choice", "choices": list(MC), "family": "geometry"},
        {"answer": "1.5", "answer_type": "number", "family": "statistics"},
    ])  # fmt: skip
    greedy = ["\\boxed{B}", "\\boxed{1.50}"]
    samples = [["\\boxed{B}", "\\boxed{A}"], ["\\boxed{2}", "no box"]]
    record = grade_completions(frame, greedy, samples, ["\\boxed{A}", "\\boxed{1.5}"], "sft", "mathvista")
    assert (record["policy"], record["split"], record["source"], record["n"], record["k"]) == ("sft", "mathvista", "mathvista", 2, 2)
    assert (record["greedy_accuracy"], record["avg_at_k"], record["greedy_accuracy_no_image"]) == (1.0, 0.25, 0.5)
    assert record["pass_at_k"] == 0.5  # the first row has a correct sample, the second none
    assert record["per_family"]["geometry"] == {"n": 1, "greedy_accuracy": 1.0, "avg_at_k": 0.5}
    assert record["per_example"][1] == {
        "id": "1", "family": "statistics", "greedy_correct": 1, "avg_at_k": 0.0, "greedy_correct_no_image": 1, "prediction": "1.50",
    }  # fmt: skip
    assert "release_metrics" not in record and record["rule_based"] is False and record["skipped_rows"] == []
    json.dumps(record)
    without = grade_completions(frame, greedy, samples, None, "sft", "mathvista")
    assert without["greedy_accuracy_no_image"] is None and without["per_example"][0]["greedy_correct_no_image"] is None
    with pytest.raises(ValueError, match="completions for 1/2 rows"):
        grade_completions(frame, greedy[:1], samples, None, "sft", "mathvista")


def test_grade_record_applies_row_rules_marks_llm_judged_benchmarks_and_keeps_skipped_rows():
    frame = benchmark_frame("mathvista", [{"answer": "1.5", "answer_type": "number", "metadata": {"precision": 1.0}}])
    assert grade_completions(frame, ["\\boxed{1.54}"], [["\\boxed{1.46}"]], None, "sft", "mv")["greedy_accuracy"] == 1.0
    frame = benchmark_frame("mathverse", [{"answer": "B", "answer_type": "multiple_choice"}])
    frame.attrs["skipped_rows"] = ["testmini.parquet row 7: empty question"]
    record = grade_completions(frame, ["\\boxed{B}"], [["\\boxed{B}"]], None, "sft", "mathverse")
    assert record["rule_based"] is True and record["skipped_rows"] == ["testmini.parquet row 7: empty question"]


def test_grade_benchmark_adds_wemath_and_dynamath_metrics():
    metadata, _ = wemath_rows({"2steps_1": [1, 1, 1], "2steps_2": [1, 1, 1]})
    frame = benchmark_frame("wemath", [{"answer": "A", "answer_type": "multiple_choice", "metadata": m} for m in metadata])
    greedy = ["\\boxed{A}", "\\boxed{A}", "\\boxed{B}", "\\boxed{A}", "\\boxed{A}", "\\boxed{A}"]  # problem 1: IG
    record = grade_completions(frame, greedy, [[g] for g in greedy], None, "sft", "wemath")
    assert record["release_metrics"]["greedy"]["IG"] == 0.5 and record["release_metrics"]["greedy"]["score_strict"] == 0.75
    rows = [{"answer": "3.142", "answer_type": "number", "metadata": {"seed": "1", "variant": v, "tolerance": 0.001}} for v in (1, 2)]
    record = grade_completions(benchmark_frame("dynamath", rows), ["\\boxed{3.1416}", "\\boxed{3.2}"], [["x"], ["x"]], None, "sft", "d")
    assert record["greedy_accuracy"] == 0.5 and record["release_metrics"]["greedy"] == {"average": 0.5, "worst_case": 0.0}


def test_grade_benchmark_adds_hallusionbench_accuracies():
    rows = [{"answer": "yes", "answer_type": "yes_no", "metadata": m} for m in hallusion_rows()]
    frame = benchmark_frame("hallusionbench", rows)
    greedy = ["\\boxed{yes}", "\\boxed{yes}", "\\boxed{no}", "\\boxed{no}", "\\boxed{yes}"]
    samples = [[g, "\\boxed{yes}"] for g in greedy]
    record = grade_completions(frame, greedy, samples, None, "grpo-uniform-s0", "hb")
    assert record["release_metrics"]["greedy"] == hallusion_accuracies(hallusion_rows(), [1, 1, 0, 0, 1], ["yes", "yes", "no", "no", "yes"])
    # avg@k: the mean over sample indices of each index's accuracies.
    assert record["release_metrics"]["avg_at_k"]["aAcc"] == pytest.approx((3 / 5 + 1) / 2)


def test_a_converted_benchmark_is_graded_with_a_tiny_model(tmp_path, tiny_world):
    """Conversion -> cached decodings (sampled, greedy, no image; with a text-only row) -> the eval record."""
    from tokencredit.dataset import load_split
    from tokencredit.evaluation import grade_rollouts
    from tokencredit.params import DECODINGS, BenchmarkSpec, PromptParams, RolloutParams
    from tokencredit.rollouts import ensure_rollouts
    from tokencredit.sources.benchmark import write_benchmark

    def png() -> dict:
        buffer = io.BytesIO()
        Image.new("RGB", (56, 56), (20, 200, 20)).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": "x.png"}

    def row(category, figure, visual, gt):
        return {"category": category, "subcategory": "chart", "visual_input": visual, "set_id": "0", "figure_id": figure,
                "question_id": "0", "question": "Is the shape green?", "gt_answer": gt, "image": png() if visual != "0" else None}

    release = tmp_path / "hb"
    (release / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row("VD", "0", "1", "1"), row("VD", "1", "2", "0")]), release / "data/image-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist([row("VS", "0", "0", "1")]), release / "data/non_image-00000-of-00001.parquet")
    spec = BenchmarkSpec(source="hallusionbench", path=str(release))
    data = tmp_path / "benchmarks"
    write_benchmark("hb", spec, PromptParams(template="{question} Answer in \\boxed{}.", answer_format="boxed"), data)

    # A local checkpoint, as on real data: no manifest, its files are hashed for the cache key.
    _, base_dir = tiny_world
    params = RolloutParams(num_samples=2, max_new_tokens=4, batch_size=2)
    cached = {d: ensure_rollouts(base_dir, data, "hb", params, d, None, tmp_path / f"{d}.parquet", tmp_path / d) for d in DECODINGS}
    assert len(cached["sampled"]) == 6 and "choices" in cached["sampled"]  # benchmarks keep their options for grading
    record = grade_rollouts(load_split(data, "hb"), cached["sampled"], cached["greedy"], cached["no_image"], 2, "sft", "hb")
    assert (record["n"], record["k"], record["split"], record["source"]) == (3, 2, "hb", "hallusionbench")
    assert set(record["per_family"]) == {"VD", "VS"}
    assert set(record["release_metrics"]["greedy"]) == {"aAcc", "fAcc", "qAcc"}
    assert all(e["greedy_correct"] in (0, 1) and e["greedy_correct_no_image"] in (0, 1) for e in record["per_example"])


def test_accuracy_reward_strings_and_conversations():
    completions = [
        "<think>x</think><answer>2</answer>",
        [{"role": "assistant", "content": "<think>x</think><answer>3</answer>"}],
        [{"role": "assistant", "content": "<answer>YES</answer>"}],
        "nothing",
    ]
    rewards = accuracy_reward(completions, answer=["2", "2", "yes", "1"], answer_type=["integer", "integer", "yes_no", "integer"], prompts=None)
    assert rewards == [1.0, 0.0, 1.0, 0.0]


def test_accuracy_reward_needs_aligned_columns():
    with pytest.raises(ValueError):
        accuracy_reward(["<answer>1</answer>"], answer=["1", "2"], answer_type=["integer", "integer"])
