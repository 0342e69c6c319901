"""GRIT's reward set (issue 22, reward_sets/grit.py) against the authors' own functions, and its place
in the pipeline: grounded targets, the params check, TRL's reward functions.

tests/golden/grit_rewards.json holds fixed completions and the numbers GRIT's functions give on them
(`_source` names repository, commit, file and functions; the scratch run is not committed).
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
    with pytest.raises(ParamsError, match=r"methods\.grit \(reward 'grit'\).*data\.target_style: grounded"):
        validate({"train": {"methods": ["uniform", "grit"]}})


def test_an_unknown_reward_set_is_refused_naming_the_method():
    with pytest.raises(ParamsError, match=r"methods\.mine\.reward: unknown reward set 'nope'"):
        validate({"train": {"methods": ["mine"]}, "methods": {"mine": {"reward": {"name": "nope"}}}})
