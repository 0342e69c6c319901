"""The memory planner against torch's measured CPU peaks, and its depth extrapolation.

The planner traces each operation on fake tensors; the same operation run on a real model of the
same config raises the process's resident memory (benchmarks/harness.peak_rss_bytes: the profiler's
replay, harness.peak_bytes, misses autograd's gradient buffers). They must agree within 25 % at two
shapes: the tiny default model and Qwen2.5-VL-3B's real widths at reduced depth.
"""

import sys
from pathlib import Path

import pytest
import torch

from tokencredit.memory_plan import PlanModel, Shape, architecture, depth_reduced, extrapolated, forward_work, prefill_work, trace, cache_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import harness  # noqa: E402


def planned_and_measured(config, shape: Shape, grad: bool) -> tuple[int, int]:
    # fp32 on both sides: CPU matmuls in bf16 are slow here, and the comparison is of the same dtype.
    fake, real = PlanModel(config, torch.float32), PlanModel(config, torch.float32, fake=False)
    planned, _ = trace(fake, forward_work(fake, shape, grad=grad, chunk=None if grad else 256))
    work = forward_work(real, shape, grad=grad, chunk=None if grad else 256)
    work()  # once before: one-time allocations (e.g. the allocator's own) are not the operation's
    measured, _ = harness.peak_rss_bytes(work)
    return planned, measured


@pytest.mark.parametrize("grad", [False, True], ids=["scoring", "update"])
def test_plan_is_within_25_percent_of_the_measured_peak_on_the_tiny_model(tiny_world, grad):
    _, base_dir = tiny_world
    planned, measured = planned_and_measured(architecture(base_dir), Shape(rows=4, prompt_text=20, completion=48, pixels=84 * 84), grad)
    assert 0.75 <= planned / measured <= 1.25, (planned, measured)


@pytest.mark.parametrize("grad", [False, True], ids=["scoring", "update"])
def test_plan_is_within_25_percent_of_the_measured_peak_at_real_widths(grad):
    config = depth_reduced(architecture("qwen2_5_vl_3b"), 2, 2)  # hidden 2048, vocabulary 151,936, vision 1280 wide
    planned, measured = planned_and_measured(config, Shape(rows=2, prompt_text=30, completion=64, pixels=112 * 112), grad)
    assert 0.75 <= planned / measured <= 1.25, (planned, measured)


def test_depth_extrapolation_equals_a_trace_at_that_depth():
    config = depth_reduced(architecture("qwen2_5_vl_3b"), 5, 3)
    shape = Shape(rows=2, prompt_text=30, completion=64, pixels=112 * 112)
    for work in (lambda pm: forward_work(pm, shape, grad=True), lambda pm: forward_work(pm, shape, grad=False, chunk=128)):
        pm = PlanModel(config)
        assert extrapolated(config, lambda small: trace(small, work(small))[0]) == pytest.approx(trace(pm, work(pm))[0], rel=1e-6)
    pm = PlanModel(config)
    assert extrapolated(config, lambda small: cache_bytes(trace(small, prefill_work(small, shape))[1])) == cache_bytes(trace(pm, prefill_work(pm, shape))[1])
