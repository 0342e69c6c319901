"""The positive-control experiment of docs/experiment.md (issue 24): arms against uniform, paired seeds.

Reads each run's test evaluation (results/eval/grpo-{method}-s{seed}/test.json, as the pipeline
writes it) and prints the Markdown the doc quotes:

1. per-seed test avg@k of every arm (%);
2. each arm minus uniform on the pre-registered confirmation seeds and on all seeds, by the report's
   comparison (stats.seed_difference: Welch over seeds plus the shared examples) and by the paired one
   (stats.paired_seed_difference: a seed fixes the data order and the first sampling stream of
   every method, so the runs of one seed may move together);
3. the correlation between methods of the per-seed means (paired by seed), pooled over the arms;
4. power: the seeds per method that bring the MDD (alpha 0.05, 80 % power) to `--target` points, with
   and without pairing, at the measured seed SD and correlation;
5. the report's MDD on every window of n consecutive seeds (n = 3 ...), arms against uniform: what a grid
   of n seeds would have shown, measured rather than projected;
6. the share of the seed variance that is the evaluation's own sampling noise (k samples per example).

    python benchmarks/positive_control.py --results results --confirm 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from tokencredit.comparison import seed_scores
from tokencredit.stats import paired_seed_difference, seed_difference

BASELINE = "uniform"


def load(results: Path, method: str, seeds: list[int]) -> np.ndarray:
    """[seeds, examples] avg@k of `method`'s runs on test, in the order of `seeds`."""
    evals = [json.loads((results / f"eval/grpo-{method}-s{s}/test.json").read_text()) for s in seeds]
    return seed_scores(evals, "avg_at_k")[1]


def seeds_of(results: Path, method: str) -> list[int]:
    return sorted(int(p.parent.name.rsplit("-s", 1)[1]) for p in results.glob(f"eval/grpo-{method}-s*/test.json"))


def seeds_for_mdd(sd: float, correlation: float, target: float, paired: bool) -> int:
    """The fewest seeds per method whose MDD (t quantiles, seed term only) is at most `target`."""
    for n in range(2, 200):
        if paired:
            df, se = n - 1, sd * np.sqrt(2 * (1 - correlation) / n)
        else:
            df, se = 2 * n - 2, sd * np.sqrt(2 / n)
        if (stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * se <= target:
            return n
    return 200


def sampling_sd(results: Path, method: str, seeds: list[int]) -> float:
    """SD (points) of one run's test avg@k from its k samples alone, root mean square over the seeds:
    the per-example variance of a mean of k draws, estimated without bias by p(1 − p)/(k − 1)."""
    variances = []
    for s in seeds:
        record = json.loads((results / f"eval/grpo-{method}-s{s}/test.json").read_text())
        p, k = np.array([e["avg_at_k"] for e in record["per_example"]]), record["k"]
        variances.append(np.sum(p * (1 - p) / (k - 1)) / len(p) ** 2)
    return 100 * float(np.sqrt(np.mean(variances)))


def mdd_windows(results: Path, arms: list[str], seeds: list[int]) -> dict[int, list[float]]:
    """The report's MDD (points) of each arm against uniform on every window of n consecutive seeds."""
    base = load(results, BASELINE, seeds)
    others = [load(results, m, seeds) for m in arms]
    return {
        n: [100 * seed_difference(base[i : i + n], other[i : i + n])["mdd"] for other in others for i in range(len(seeds) - n + 1)]
        for n in range(3, len(seeds) + 1)
    }


def row(name: str, result: dict) -> str:
    pct = {k: 100 * v for k, v in result.items() if k in ("diff", "ci_low", "ci_high", "mdd")}
    return f"| {name} | {pct['diff']:+.1f} [{pct['ci_low']:+.1f}, {pct['ci_high']:+.1f}] | {result['p_value']:.3f} | {pct['mdd']:.1f} |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--arms", nargs="+", default=["oracle_first_error", "random_first_error", "oracle_perception"])
    p.add_argument("--confirm", nargs="+", type=int, default=[1, 2, 3, 4], help="the pre-registered confirmation seeds")
    p.add_argument("--target", type=float, default=4.0, help="the difference to detect, points")
    args = p.parse_args()

    methods = [BASELINE, *args.arms]
    seeds = {m: seeds_of(args.results, m) for m in methods}
    print("| method | " + " | ".join(f"s{s}" for s in seeds[BASELINE]) + " | mean |\n|---|" + "---|" * (len(seeds[BASELINE]) + 1))
    for m in methods:
        means = {s: 100 * load(args.results, m, [s]).mean() for s in seeds[m]}
        cells = [f"{means[s]:.1f}" if s in means else "–" for s in seeds[BASELINE]]
        print(f"| {m} | " + " | ".join(cells) + f" | {np.mean(list(means.values())):.1f} |")

    for label, chosen in (("confirmation seeds " + ", ".join(map(str, args.confirm)), args.confirm), ("all seeds", None)):
        print(f"\n{label}: arm − uniform, test avg@k, points (95 % interval), p, MDD\n")
        print("| comparison | difference | p | MDD |\n|---|---|---|---|")
        for m in args.arms:
            common = [s for s in seeds[m] if s in seeds[BASELINE] and (chosen is None or s in chosen)]
            if len(common) < 2:
                continue
            a, b = load(args.results, m, common), load(args.results, BASELINE, common)
            print(row(f"{m} (unpaired, {len(common)} + {len(common)} seeds)", seed_difference(a, b)))
            print(row(f"{m} (paired)", paired_seed_difference(a, b)))

    # Between-method correlation of per-seed means, paired by seed: each arm with uniform, pooled by Fisher's z.
    zs, weights, sds = [], [], []
    for m in args.arms:
        common = [s for s in seeds[m] if s in seeds[BASELINE]]
        if len(common) < 4:
            continue
        a, b = load(args.results, m, common).mean(-1), load(args.results, BASELINE, common).mean(-1)
        r = float(np.corrcoef(a, b)[0, 1])
        print(f"\ncorrelation of per-seed means, {m} with uniform over seeds {common}: r = {r:.2f}")
        zs.append(np.arctanh(r))
        weights.append(len(common) - 3)
        sds += [a.std(ddof=1), b.std(ddof=1)]
    if zs:
        r = float(np.tanh(np.average(zs, weights=weights)))
        sd = 100 * float(np.sqrt(np.mean(np.square(sds))))
        print(f"\npooled r = {r:.2f}; seed SD {sd:.1f} points (root mean square over the groups)")
        for paired in (False, True):
            n = seeds_for_mdd(sd, r if paired else 0.0, args.target, paired)
            print(f"seeds per method for an MDD of {args.target:g} points, {'paired' if paired else 'unpaired'}: {n}")

    common = [s for s in seeds[BASELINE] if all(s in seeds[m] for m in args.arms)]
    if len(common) >= 4:
        print(f"\nthe report's MDD on windows of n consecutive seeds of {common} (points; every arm against uniform)\n")
        print(f"| seeds per method | windows | median | range | share ≤ {args.target:g} |\n|---|---|---|---|---|")
        for n, mdds in mdd_windows(args.results, args.arms, common).items():
            print(f"| {n} | {len(mdds)} | {np.median(mdds):.1f} | {min(mdds):.1f}–{max(mdds):.1f} | {np.mean(np.array(mdds) <= args.target):.0%} |")
    print("\n| method | seed SD (points) | of it, the evaluation's sampling SD | sampling share of the variance |\n|---|---|---|---|")
    for m in methods:
        if len(seeds[m]) >= 3:
            total = 100 * float(load(args.results, m, seeds[m]).mean(-1).std(ddof=1))
            sampled = sampling_sd(args.results, m, seeds[m])
            print(f"| {m} ({len(seeds[m])} seeds) | {total:.2f} | {sampled:.2f} | {(sampled / total) ** 2:.0%} |")


if __name__ == "__main__":
    main()
