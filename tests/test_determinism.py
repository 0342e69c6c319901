"""Determinism across processes: the same params and seed give bit-identical synthetic data, base
model, SFT weights, cached decodings and evaluation numbers in two fresh Python processes with different hash seeds
(string hashing, hence set and dict-of-set order, changes between processes).

Within one process these are pinned by test_synthetic (data bytes), test_models (base weights),
test_sft (SFT weights) and test_evaluation (generations); training and rollouts across processes by
test_faults. On CPU the numbers also depend on the torch thread count (float sums split across
threads differ in their last bits): both processes here run one thread, as the rules fix each job's.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tokencredit import synthetic
from tokencredit.dataset import load_split
from tokencredit.evaluation import grade_rollouts
from tokencredit.manifest import write_manifest
from tokencredit.models import load_policy, save_policy
from tokencredit.params import DECODINGS, DataParams, ModelParams, RolloutParams, SFTParams
from tokencredit.rollouts import ensure_rollouts
from tokencredit.sft import train_sft
from tokencredit.tiny_vlm import build_base

ROOT = Path(__file__).resolve().parents[1]


def fingerprint(root: Path) -> dict:
    """Digests of every artifact of data -> base -> SFT -> cached decodings -> evaluation, built under `root`."""
    torch.set_num_threads(1)
    data, base = root / "data", root / "base"
    params = DataParams(families=["count_color", "exists", "sum_digits"], n_train=16, n_validation=4, n_test=6, n_test_ood=4)
    synthetic.write_splits(params, data)
    build_base(ModelParams(), synthetic.corpus(params), base)
    model, processor = load_policy(base, ModelParams())
    sft = SFTParams(max_steps=3, batch_size=4, eval_every=3, target_accuracy=None, text_only_fraction=0.5)
    train_sft(model, processor, load_split(data, "train"), load_split(data, "validation"), data, sft, no_validation)
    sft_dir, rollouts = root / "sft", root / "rollouts"
    save_policy(model, processor, sft_dir)
    write_manifest(sft_dir)
    params = RolloutParams(num_samples=2, max_new_tokens=8)
    cached = {d: ensure_rollouts(sft_dir, data, "test", params, d, None, rollouts / f"{d}.parquet", rollouts / d) for d in DECODINGS}
    result = grade_rollouts(load_split(data, "test"), cached["sampled"], cached["greedy"], cached["no_image"], None, "sft", "test")

    def digest(paths) -> str:
        h = hashlib.sha256()
        for path in sorted(paths):
            h.update(str(path.relative_to(root)).encode() + path.read_bytes())
        return h.hexdigest()

    weights = hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values())).hexdigest()
    return {
        "data": digest(p for p in data.rglob("*") if p.is_file()),
        "base": digest(p for p in base.rglob("*") if p.is_file()),
        "sft_weights": weights,
        "rollouts": digest(rollouts.glob("*.parquet")),
        "evaluation": result,
    }


def no_validation(*_) -> dict[str, float]:
    """SFT's validation check generates as evaluation does, which the fingerprint covers already."""
    return {"val_accuracy": 0.0}


def test_same_params_and_seed_give_identical_artifacts_in_fresh_processes(tmp_path):
    jobs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"hash-seed-{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
        jobs.append(subprocess.Popen([sys.executable, __file__, str(out)], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True))
    first, second = (json.loads(job.communicate(timeout=300)[0].splitlines()[-1]) for job in jobs)
    assert all(job.returncode == 0 for job in jobs)
    assert first == second
    assert first["evaluation"]["n"] == 6


if __name__ == "__main__":  # one process of the test above
    print(json.dumps(fingerprint(Path(sys.argv[1]))))
