"""The train step in two gloo processes on CPU, every engine x method pair the suite does not run.

tests/test_distributed.py trains AT-RL under DDP and VPPO under FSDP (accelerate's, made to run on
CPU by tests/fsdp_on_cpu.py), each from a bf16 checkpoint under bf16 mixed precision, through
`steps.train` as the train rule launches it; this runs all four pairs with the same checks (the same
full state dict on every process, one tracked run, the policy saved in bf16) and the seconds each
job took, so the ratio FSDP/DDP is measured in one run.

    python benchmarks/distributed_cpu.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import harness

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_distributed import check_trained_alike_and_saved_once, train_in_two_processes  # noqa: E402

METHODS = {"vppo": {"weighting": "vppo", "counterfactual": "gray"}, "atrl": {"weighting": "atrl"}}


def main() -> None:
    args = harness.parse_args(argparse.ArgumentParser(description=__doc__))
    import torch

    from tokencredit.manifest import write_manifest
    from tokencredit.models import load_policy, save_policy

    rows = []
    with harness.world("tiny") as w, tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch) / "bf16"
        save_policy(*w.new_policy(), base, dtype=torch.bfloat16)
        write_manifest(base)
        for engine in ("ddp", "fsdp"):
            for method, spec in METHODS.items():
                cwd = Path(scratch) / f"{engine}-{method}"
                cwd.mkdir()
                start = time.perf_counter()
                out, log = train_in_two_processes(w.data_dir, base, cwd, engine, method, spec)
                seconds = time.perf_counter() - start
                check_trained_alike_and_saved_once(out, log)
                rows.append([engine, method, seconds, "equal on both processes", "bf16"])
    settings = "2 gloo processes, `accelerate launch` of `steps.train`, 1 GRPO step of 2 prompts x 4 completions of up to 8 tokens, bf16 mixed precision from a bf16 checkpoint."
    body = harness.table(["engine", "method", "job s", "full state dict", "saved"], rows)
    harness.report("distributed_cpu", "tiny", settings, body, not args.no_record)


if __name__ == "__main__":
    main()
