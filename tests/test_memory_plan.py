"""The memory planner against measured CPU peaks, and its depth extrapolation.

The planner traces each operation on fake tensors (tokencredit.memory_plan); benchmarks/memory_plan.py
runs the same operations on real models of the same configs in a child process whose allocations
are all mapped, and reads the rise of its resident memory (the profiler's replay misses autograd's
gradient buffers). They must agree within 25 % at three shapes: the tiny default model, its Qwen3-VL twin (DeepStack),
and Qwen2.5-VL-3B's real widths (hidden 2048, vocabulary 151,936, vision 1280) at reduced depth.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

from tokencredit.memory_plan import PlanModel, Shape, architecture, cache_bytes, depth_reduced, extrapolated, forward_work, prefill_work, trace

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def checked(tiny_world):
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("memory_plan_benchmark", BENCHMARKS / "memory_plan.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    return benchmark.check(tiny_world[1])


def test_plan_is_within_25_percent_of_the_measured_peak(checked):
    assert {(row["shape"], row["operation"]) for row in checked} == {
        (shape, op) for shape in ("tiny", "tiny qwen3_vl", "qwen2_5_vl_3b, 2 layers, 2 blocks") for op in ("scoring", "update")
    }
    for row in checked:
        assert 0.75 <= row["planned"] / row["measured"] <= 1.25, row


@pytest.mark.parametrize(
    "name, depth, shape, works",
    [
        ("qwen2_5_vl_3b", (5, 3), Shape(rows=2, prompt_text=30, completion=64, pixels=112 * 112), ("update", "scoring")),
        # DeepStack's 3 taps: traces at 3 and 4 layers and blocks; the update only, the costliest and most involved
        ("qwen3_vl_4b", (5, 5), Shape(rows=1, prompt_text=30, completion=32, pixels=96 * 96), ("update",)),
    ],
)
def test_depth_extrapolation_equals_a_trace_at_that_depth(name, depth, shape, works):
    config = depth_reduced(architecture(name), *depth)
    operations = {"update": lambda pm: forward_work(pm, shape, grad=True), "scoring": lambda pm: forward_work(pm, shape, grad=False, chunk=128)}
    for work in (operations[w] for w in works):
        full = PlanModel(config)
        assert extrapolated(config, lambda small: trace(small, work(small))[0]) == pytest.approx(trace(full, work(full))[0], rel=1e-6)
    full = PlanModel(config)
    planned = extrapolated(config, lambda small: cache_bytes(trace(small, prefill_work(small, shape))[1]))
    assert planned == cache_bytes(trace(full, prefill_work(full, shape))[1])


def test_lora_states_count_the_adapter_and_hold_the_frozen_base_in_its_dtype(tiny_world):
    """Gradients and AdamW moments of peft's trainable parameters only; the base in bf16, the adapter in fp32."""
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText

    from tokencredit.memory_plan import training_states
    from tokencredit.params import LoraParams, TrainParams
    from tokencredit.training import lora_config

    _, base_dir = tiny_world
    lora = LoraParams(rank=8)
    trainable, total = get_peft_model(AutoModelForImageTextToText.from_pretrained(base_dir), lora_config(lora)).get_nb_trainable_parameters()
    assert 0 < trainable < total / 10
    pm = PlanModel(architecture(base_dir), lora=lora)
    assert training_states(pm, TrainParams(lora=lora, distributed="ddp", num_processes=1, beta=0.04)) == {
        "weights": 2 * (total - trainable) + 4 * trainable, "gradients": 4 * trainable, "optimizer": 8 * trainable, "bf16 copies": 2 * trainable,
    }  # no reference model: LoRA's is the base with the adapter off
    full = training_states(PlanModel(architecture(base_dir)), TrainParams(distributed="fsdp", num_processes=2, beta=0.04))
    assert (full["optimizer"], full["reference"]) == (8 * (total - trainable) // 2, 2 * (total - trainable) // 2)


def test_a_job_over_its_gpu_memory_stops_before_any_job_naming_the_key(tiny_world, monkeypatch, tmp_path):
    from tokencredit.memory_plan import check_memory
    from tokencredit.params import validate

    monkeypatch.setenv("HOME", str(tmp_path))  # the plan cache
    _, base_dir = tiny_world
    tight = validate({"model": {"path": str(base_dir)}, "resources": {"score": {"gpus": 1, "gpu_memory_gb": 0.001}}}, "test")
    with pytest.raises(ValueError) as err:
        check_memory(tight)
    message = str(err.value)
    assert "resources.score.gpu_memory_gb: score · scoring plans" in message and "over 0.001 GB less a 10% margin" in message
    assert "lower score.batch_size" in message and "allow_over_plan" in message and "train ·" not in message
    check_memory(validate({"model": {"path": str(base_dir)}, "resources": {"score": {"gpu_memory_gb": 0.001, "allow_over_plan": True}}}, "test"))
    check_memory(validate({"model": {"path": str(base_dir)}, "resources": {"score": {"gpu_memory_gb": 80}}}, "test"))
    assert len(list((tmp_path / ".cache/tokencredit/memory_plan").iterdir())) == 1  # planned once, then read back
