"""Golden weights: every method's w[B,T] on fixed inputs, pinned before the method-recipe refactor (issue 22).

tests/golden/weight_inputs.json holds the inputs (signals with ties, advantages of both signs,
responses of 1 to 10 tokens, VPPO's layout, the tie-breaking seed); tests/golden/weights.json the
weights of every registered weighting at its defaults and of every built-in `methods:` entry.
A refactor must reproduce them; a deliberate change of a method's weights regenerates the file
(`python tests/test_golden_weights.py`) and says why in its commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tokencredit.params import _default_methods
from tokencredit.signals import TokenSignals
from tokencredit.weighting import Context, Layout, build_weighting, registered

GOLDEN = Path(__file__).parent / "golden"


def _inputs() -> tuple[TokenSignals, torch.Tensor, dict]:
    raw = json.loads((GOLDEN / "weight_inputs.json").read_text())
    mask = torch.tensor(raw["mask"], dtype=torch.bool)
    signals = TokenSignals(mask=mask, **{k: torch.tensor(v, dtype=torch.float32) for k, v in raw["signals"].items()})
    return signals, torch.tensor(raw["advantages"]), raw


def _weights(weighting: str, hparams: dict) -> torch.Tensor:
    signals, advantages, raw = _inputs()
    context = Context(torch.Generator().manual_seed(raw["tie_seed"]), Layout(**raw["layout"]))
    return build_weighting(weighting, **hparams)(signals, advantages, context)


def _cases() -> dict[str, tuple[str, dict]]:
    cases = {f"weighting:{name}": (name, {}) for name in registered()}
    cases.update({f"method:{name}": (spec.weighting, dict(spec.hparams)) for name, spec in _default_methods().items()})
    return cases


def _golden() -> dict[str, list[list[float]]]:
    return json.loads((GOLDEN / "weights.json").read_text())


@pytest.mark.parametrize("case", sorted(_cases()))
def test_weights_match_the_golden_numbers(case):
    golden = _golden()
    assert case in golden, f"{case} has no golden weights: add them deliberately (python tests/test_golden_weights.py)"
    weighting, hparams = _cases()[case]
    torch.testing.assert_close(_weights(weighting, hparams), torch.tensor(golden[case]), rtol=1e-6, atol=1e-6)


def test_the_inputs_exercise_the_methods():
    """The fixture is not degenerate: the pinned weights differ between methods and select sparsely."""
    golden = _golden()
    assert len({json.dumps(w) for w in golden.values()}) >= 15
    tor = torch.tensor(golden["method:tor"])
    assert 0 < (tor > 0).sum() < _inputs()[0].mask.sum()


if __name__ == "__main__":  # regenerate: only for a deliberate change of some method's weights
    pinned = {case: [[round(x, 7) for x in row] for row in _weights(*spec).tolist()] for case, spec in sorted(_cases().items())}
    (GOLDEN / "weights.json").write_text("{\n" + ",\n".join(f'"{k}": {json.dumps(v)}' for k, v in pinned.items()) + "\n}\n")
