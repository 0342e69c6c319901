"""GRIT's reward sets (issue 22: reward_sets/grit.py, the released rewards; reward_sets/grit_fork.py, the
fork's comparison) against their authors' own functions, and their place in the pipeline: grounded
targets, the params checks, TRL's reward functions.

tests/golden/grit_rewards.json and grit_fork_rewards.json hold fixed completions and the numbers those
functions give on them (`_source` names repository, commit, file and functions; the scratch runs are
not committed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokencredit.algorithms import ALGORITHMS
from tokencredit.params import ParamsError, TrainParams, validate
from tokencredit.recipe import resolve
from tokencredit.reward_sets import build_reward_set
from tokencredit.reward_sets.grit import grit_answer_format, grit_bleu, grit_grounded, grit_repetition, grit_think_rethink
from tokencredit.reward_sets.grit_fork import grit_fork_bleu, grit_fork_boxes, grit_fork_structure
from tokencredit.synthetic import make_examples
from tokencredit.training import reward_functions

GOLDEN = json.loads((Path(__file__).parent / "golden" / "grit_rewards.json").read_text())
CASES = GOLDEN["cases"]
COMPLETIONS = [c["completion"] for c in CASES]
ANSWERS = [c["answer"] for c in CASES]


@pytest.mark.parametrize(
    "term, ours",
    [
        ("bleu", lambda: grit_bleu(COMPLETIONS, ANSWERS)),
        ("answer_format", lambda: grit_answer_format(COMPLETIONS)),
        ("think_rethink_format", lambda: grit_think_rethink(COMPLETIONS)),
        ("grounded_counting", lambda: grit_grounded(COMPLETIONS, ANSWERS, family=["count_color"] * len(CASES))),
        ("grounded_other", lambda: grit_grounded(COMPLETIONS, ANSWERS, family=["exists"] * len(CASES))),
        ("repetition", lambda: grit_repetition(COMPLETIONS, [c["completion_ids"] for c in CASES])),
    ],
)
def test_each_term_matches_the_authors_function(term, ours):
    assert ours() == pytest.approx(GOLDEN["rewards"][term], abs=1e-12)


FORK = json.loads((Path(__file__).parent / "golden" / "grit_fork_rewards.json").read_text())


def test_the_fork_variant_matches_its_compute_score():
    """Structure, boxes (raw and JSON evidence, image_idx checked against the row's images) and BLEU
    as the fork's compute_score gives them; accuracy is the task's grader, not mathruler."""
    responses = [c["response"] for c in FORK["cases"]]
    answers = [c["ground_truth"] for c in FORK["cases"]]
    images = [[None] * c["num_images"] for c in FORK["cases"]]
    assert grit_fork_structure(responses) == [s["format_structure"] for s in FORK["scores"]]
    assert grit_fork_boxes(responses, images=images) == [s["format_bbox"] for s in FORK["scores"]]
    assert grit_fork_bleu(responses, answers) == pytest.approx([0.1 * s["bleu1"] for s in FORK["scores"]], abs=1e-12)


def test_a_grounded_target_earns_every_term():
    """A target of the grounded task (boxes of the counted objects, <rethink>) scores GRIT's maximum but
    BLEU's (their BLEU-1 reads the closing tag's word too)."""
    example = next(e for e in make_examples(validate({"data": {"target_style": "grounded", "n_train": 20}}).data, "train") if e.answer != "0")
    rewards = build_reward_set("grit")
    columns = {"answer": [example.answer], "answer_type": ["integer"], "family": [example.family]}
    scores = {f.__name__: f([example.target], completion_ids=[list(range(40))], **columns)[0] for f in rewards.funcs}
    assert scores == {
        "accuracy_reward": 1.0, "grit_bleu": 0.05, "grit_answer_format": 0.5, "grit_repetition": 0.5, "grit_grounded": 1.5,
        "grit_think_rethink": 0.5,
    }  # fmt: skip


def test_the_reward_set_replaces_the_task_reward_and_keeps_dapo_shaping():
    params = validate({"train": {"methods": ["grit"], "overlong_cache": 8}, "data": {"target_style": "grounded"}})
    recipe = resolve("grit", params.methods["grit"])
    assert recipe.components() == {"weighting": "uniform", "reward": "grit", "counterfactual": "none"}
    funcs, weights = reward_functions(params.train, ALGORITHMS["dapo"], recipe.reward)
    assert [f.__name__ for f in funcs] == [
        "accuracy_reward", "grit_bleu", "grit_answer_format", "grit_repetition", "grit_grounded", "grit_think_rethink", "overlong_reward",
    ]  # fmt: skip
    assert weights == [1.0] * 7
    funcs, weights = reward_functions(TrainParams(format_reward=0.1), ALGORITHMS["grpo"])
    assert [f.__name__ for f in funcs] == ["accuracy_reward", "format_reward"] and weights == [0.9, 0.1]


def test_grit_on_plain_targets_is_refused_naming_the_keys():
    with pytest.raises(ParamsError, match=r"methods\.grit \(reward .grit.\) rewards a format the tiny model learns only from data\.target_style: grounded"):
        validate({"train": {"methods": ["uniform", "grit"]}})


def test_grit_on_real_data_needs_a_prompt_asking_for_its_format(tmp_path):
    copy = str(tmp_path)
    real = {
        "data": {"source": "geometry3k", "path": copy}, "model": {"path": copy},
        "eval": {"splits": [], "benchmarks": ["b"]}, "benchmarks": {"b": {"source": "mathvista", "path": copy}},
    }  # fmt: skip
    with pytest.raises(ParamsError, match=r"methods\.grit_fork .* prompt\.template does not contain '<rethink>'"):
        validate({**real, "train": {"methods": ["grit_fork"]}})
    asked = validate({**real, "train": {"methods": ["grit_fork", "grit"]}, "prompt": {"template": "{question} then <rethink> </rethink>"}})
    assert asked.train.methods == ["grit_fork", "grit"]


def test_an_unknown_reward_set_is_refused_naming_the_method():
    with pytest.raises(ParamsError, match=r"methods\.mine\.reward: unknown reward set 'nope'"):
        validate({"train": {"methods": ["mine"]}, "methods": {"mine": {"reward": {"name": "nope"}}}})
