"""Forward passes of one training step per method, counted at the decoder stack (issue 21).

Step time on a GPU is dominated by forwards over the generated batch; this counts them instead of
timing them, so the numbers are exact on any machine. A hook on the decoder stack
(`model.model.language_model`) sees every forward: TRL's loss and old-policy forwards (through the
top-level model) and the scoring forwards (`signals.score_policy` calls `model.model` directly,
which a hook on the top-level model would miss). Each forward is sorted by

- grad: whether autograd records it (`torch.is_grad_enabled()` when the decoder runs);
- input: `real` (the rollout's own image) or `counterfactual`, judged from the VLM backbone's
  inputs in the same call: no image tokens (drop_image); image tokens but no pixels
  (mask_visual_attention); pixels whose rows differ from those the rollout was generated from
  (pixel perturbations). The rows generation saw are fingerprinted at `generate()`.

Counts are passes over the generated batch (rows forwarded / rows generated), so micro-batching
and scoring's row chunks do not change them. Generation's own forwards (prefill and decode) are
counted apart and left out of the budget.

Run: `python benchmarks/forward_budget.py` (every method of params' defaults, updates_per_generation
1 and 2; `--no-record` to print only).
"""

from __future__ import annotations

import argparse
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

GRAD, NO_GRAD = "grad", "no_grad"
REAL, COUNTERFACTUAL = "real", "counterfactual"


def decoder_stack(model: Any) -> torch.nn.Module:
    """The text decoder (Qwen2/2.5/3-VL: `model.model.language_model`), under peft's wrapper too."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model.language_model


def _row_sums(pixel_values: torch.Tensor) -> torch.Tensor:
    """One fingerprint per pixel row: its sum in float64 (a perturbation changes it)."""
    return pixel_values.detach().double().flatten(1).sum(1).cpu()


class ForwardCounter:
    """Counts decoder-stack forwards by (grad, input), in passes over `rows` generated rows."""

    def __init__(self, model: Any) -> None:
        self.model = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.backbone = base.model
        self.image_token_id = base.config.image_token_id
        self.rows_forwarded: Counter[tuple[str, str]] = Counter()
        self.generation_calls = 0
        self.generated_rows = 0
        self._real_rows = torch.empty(0, dtype=torch.float64)
        self._generating = False
        self._input = REAL

    def _classify(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        pixels = kwargs.get("pixel_values")
        if self._generating or input_ids is None:
            return
        has_image_tokens = bool((input_ids == self.image_token_id).any())
        if not has_image_tokens or pixels is None:  # drop_image, mask_visual_attention
            self._input = COUNTERFACTUAL
            return
        sums = _row_sums(pixels)
        matched = torch.isclose(sums[:, None], self._real_rows[None, :], rtol=1e-3, atol=1e-2).any(1)
        self._input = REAL if bool(matched.all()) else COUNTERFACTUAL

    def _count(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        if self._generating:
            self.generation_calls += 1
            return
        embeds = kwargs.get("inputs_embeds")
        rows = embeds.shape[0] if embeds is not None else kwargs.get("input_ids", args[0] if args else None).shape[0]
        self.rows_forwarded[(GRAD if torch.is_grad_enabled() else NO_GRAD, self._input)] += rows
        self._input = REAL

    @contextmanager
    def counting(self) -> Iterator[ForwardCounter]:
        generate = self.model.generate

        def counted_generate(*args: Any, **kwargs: Any):
            if kwargs.get("pixel_values") is not None:
                self._real_rows = torch.cat([self._real_rows, _row_sums(kwargs["pixel_values"])])
            self._generating = True
            try:
                out = generate(*args, **kwargs)
            finally:
                self._generating = False
            self.generated_rows += out.shape[0]
            return out

        handles = [
            self.backbone.register_forward_pre_hook(self._classify, with_kwargs=True),
            decoder_stack(self.model).register_forward_pre_hook(self._count, with_kwargs=True),
        ]
        self.model.generate = counted_generate
        try:
            yield self
        finally:
            del self.model.generate  # the instance attribute; the class's method shows again
            for h in handles:
                h.remove()

    def passes(self) -> dict[str, float]:
        """Passes over the generated batch per (grad, input): e.g. {"grad/real": 1.0, "no_grad/counterfactual": 1.0}."""
        return {f"{g}/{i}": rows / self.generated_rows for (g, i), rows in sorted(self.rows_forwarded.items())}


def step_budget(trainer: Any) -> dict[str, float]:
    """Passes over the generated batch of one `trainer.train()` (set max_steps to the updates of one generation)."""
    counter = ForwardCounter(trainer.model)
    with counter.counting():
        trainer.train()
    return counter.passes()


# -- the benchmark ---------------------------------------------------------------------------------------
LOSS_FORWARD_METHODS = ("entropy_topk", "atrl")  # read only entropy/attention: train.signals_from_loss applies
COLUMNS = [f"{g}/{i}" for g in (NO_GRAD, GRAD) for i in (REAL, COUNTERFACTUAL)]


def budget_rows(budgets: dict[str, dict[str, float]]) -> list[list[object]]:
    """One row per method: its passes, and its extra passes over TRL's uniform and over uniform with
    the old-policy forward (EasyR1's baseline, which always pays it)."""
    trl_uniform = sum(budgets["uniform"].values())
    easyr1_uniform = trl_uniform + (0 if budgets["uniform"].get("no_grad/real") else 1)
    rows = []
    for method, b in budgets.items():
        total = sum(b.values())
        counts = [round(b.get(c, 0.0), 3) for c in COLUMNS]
        rows.append([method, *counts, round(total, 3), f"{total - trl_uniform:+.3g}", f"{total - easyr1_uniform:+.3g}", "yes" if meets_goal(b) else "no"])
    return rows


def meets_goal(budget: dict[str, float]) -> bool:
    """One no-grad forward with the real image serves everything (old-policy log-probs and every
    signal); a counterfactual adds at most one no-grad forward of its input."""
    return budget.get(f"{NO_GRAD}/{REAL}", 0.0) <= 1 and budget.get(f"{NO_GRAD}/{COUNTERFACTUAL}", 0.0) <= 1


def kind(name: str, spec: Any) -> tuple:
    """What decides a method's forwards: the signals it scores, its counterfactual input, its loss and its rollout transform."""
    from tokencredit.recipe import resolve
    from tokencredit.signals import LABEL_SIGNALS

    recipe = resolve(name, spec)
    return (
        frozenset(recipe.needs - LABEL_SIGNALS),
        recipe.counterfactual,
        spec.loss.name if spec.loss else None,
        spec.transform.name if spec.transform else None,
    )


def one_of_each_kind(methods: dict[str, Any]) -> list[str]:
    """The first-listed method of each kind, in the order listed."""
    first = {kind(name, spec): name for name, spec in reversed(list(methods.items()))}
    return [name for name in methods if name in first.values()]


def main() -> None:
    from benchmarks.harness import make_trainer, parse_args, report, table, world
    from tokencredit.params import Params

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="*", default=sorted(Params().methods), help="default: every method of params' defaults")
    args = parse_args(p)
    body = []
    with world("tiny") as w:
        w = _small(w)
        for updates in (1, 2):
            budgets = {}
            # Off-policy, one method of each kind: the old-policy forward adds the same to every method of a kind.
            chosen = args.methods if updates == 1 else [m for m in one_of_each_kind(Params().methods) if m in args.methods]
            runs = [("uniform", {}), *[(m, {}) for m in chosen if m != "uniform"]]
            runs += [(m, {"signals_from_loss": True}) for m in LOSS_FORWARD_METHODS if m in args.methods]
            if updates > 1:  # TRL's own old-policy forward, as before train.reuse_scoring_logps
                runs += [(m, {"reuse_scoring_logps": False}) for m in chosen if kind(m, Params().methods[m])[0]]
            for method, options in runs:
                name = method + "".join(f" ({key}{'' if value else ' false'})" for key, value in options.items())
                trainer = make_trainer(
                    w, method, steps=updates, out=Path(w.data_dir).parent / f"out-{updates}", **options,
                    updates_per_generation=updates, logging_steps=updates, save_steps=2 * updates,
                )  # fmt: skip
                budgets[name] = step_budget(trainer)
                print(name, updates, budgets[name], flush=True)
            header = ["method", *COLUMNS, "total", "vs TRL uniform", "vs uniform + old-policy forward", "goal met"]
            body.append(f"updates_per_generation {updates}:\n\n" + table(header, budget_rows(budgets)))
    settings = (
        "Forward passes over the generated batch in one generation's training (updates_per_generation optimizer steps), "
        "counted at the decoder stack; generation's own forwards left out. Tiny model, 2 prompts x 2 generations. "
        "updates_per_generation 2: one method of each kind (signals, counterfactual, loss, transform); a scoring "
        "method's scoring forward gives TRL's old-policy log-probs (train.reuse_scoring_logps), "
        "'(reuse_scoring_logps false)': TRL's own old-policy forward."
    )
    report("forward_budget", "tiny", settings, "\n\n".join(body), record=not args.no_record)


def _small(w):
    """The tiny world at 2 prompts x 2 generations of 8 tokens: counts do not depend on the batch."""
    from dataclasses import replace

    return replace(w, workload=replace(w.workload, prompts=2, generations=2, completion_length=8))


if __name__ == "__main__":
    main()
