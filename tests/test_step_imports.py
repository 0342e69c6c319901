"""Every Snakemake job starts a step, so a step module imports only what parses its arguments
(steps/__init__.py); the heavy libraries come in main(), where the work needs them."""

import subprocess
import sys
from pathlib import Path

import pytest

STEPS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "steps").glob("*.py") if p.stem not in ("__init__", "common"))
HEAVY = ("torch", "transformers", "trl", "mlflow", "datasets", "math_verify", "matplotlib", "tokencredit.sources")


@pytest.mark.parametrize("step", STEPS)
def test_importing_a_step_imports_no_heavy_library(step):
    code = f"import sys, steps.{step}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


def test_reading_the_rollout_cache_needs_no_model_library():
    """Grading, and a rollouts job whose caches all match, read the cache without torch or transformers."""
    code = "import sys, tokencredit.rollouts, tokencredit.evaluation; print(' '.join(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
