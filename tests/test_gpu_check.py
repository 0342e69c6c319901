"""benchmarks/gpu_check.py at --tiny on CPU, its GPU half run as the GPU machine would: without trl,
pydantic or the pipeline's tools (shared PLATFORM.md, "GPU machines")."""

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu_check import prepare

ROOT = Path(__file__).resolve().parents[1]
ABSENT_ON_GPU = ["trl", "pydantic", "snakemake", "mlflow", "dvc", "pandas", "datasets"]
# Importing any of them fails and probes (importlib.util.find_spec, as transformers checks what is
# installed) find nothing, as on the GPU machine where they are not installed.
BLOCKED_RUN = f"""
import importlib.util, runpy, sys
absent = lambda name: name.split(".")[0] in {ABSENT_ON_GPU!r}
class Absent:
    def find_spec(self, name, path=None, target=None):
        if absent(name):
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent on the GPU machine)")
sys.meta_path.insert(0, Absent())
probe = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if absent(name) else probe(name, package)
sys.argv = ["gpu_check.py", *sys.argv[1:]]
runpy.run_path({str(ROOT / "benchmarks/gpu_check.py")!r}, run_name="__main__")
"""


def test_tiny_check_runs_without_the_pipelines_packages(tmp_path):
    plan = prepare(None, tiny=True)
    kept = ["scoring/vis_k3/patch_blackening", "scoring/attn_image/no_counterfactual"]  # the other kinds cost the same
    assert set(plan["scoring"]) >= set(kept)
    plan["scoring"] = {k: plan["scoring"][k] for k in kept}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "gpu_check.json"
    run = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, "--plan", str(tmp_path / "plan.json"), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    checks = json.loads(out.read_text())["checks"]
    failed = {name: r["error"] for name, r in checks.items() if r["status"] == "failed"}
    assert not failed
    assert {"generation_prefill", "generation_decode", "train_micro_batch/sdpa", "train_micro_batch/eager"} <= set(checks)
    assert checks["scoring_fsdp_autocast"]["status"] == "skipped"  # needs CUDA



def test_rehearsal_builds_the_real_width_inputs(tmp_path):
    """benchmarks/rehearsal.py's data, processor and config (the model itself, 543 M parameters, is not built):
    its imports go stale when a refactor moves what it uses, and only a benchmark run would notice."""
    from benchmarks.rehearsal import build, visual_tokens

    world, model_params = build(tmp_path, tokens=8, pixels=1_003_520)
    assert (model_params.min_pixels, model_params.max_pixels) == (200_704, 1_003_520) and world.workload.completion_length == 8
    assert (world.data_dir / "train.parquet").exists()
    assert (visual_tokens(200_704), visual_tokens(1_003_520)) == (256, 1225)
