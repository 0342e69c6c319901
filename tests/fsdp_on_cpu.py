"""Run a module under accelerate's FSDP on CPU (gloo):
`accelerate launch --config_file workflow/accelerate/fsdp.yaml tests/fsdp_on_cpu.py steps.train ARGS...`

accelerate 1.15 refuses FSDP without an accelerator device, in two places, both of which this
replaces for the CPU exactly as accelerate does them for a GPU:
- AcceleratorState gives CPU processes distributed_type MULTI_CPU, and only for GPU-like types
  switches to FSDP and attaches the plugin (state.py, `if (ACCELERATE_USE_FSDP ...`): done here
  for MULTI_CPU, with the plugin's mixed-precision policy set as there;
- FullyShardedDataParallelPlugin with sync_module_states asks the current CUDA/XPU/... device for
  its param_init_fn and raises without one: it gets the CPU.
A third difference is torch's: FSDP1 compares its CPU compute device, `cpu`, with accelerate's
`device_id`, `cpu:0`, and refuses them as different, so FSDP gets `cpu`; and it refuses
sync_module_states for CPU tensors, which NCCL cannot broadcast but gloo can: that check is skipped.
And full state dicts are gathered without `offload_to_cpu` (they are on the CPU already): with it,
torch 2.13's FSDP1 on CPU frees the gathered parameters before cloning them (SIGSEGV).
Everything else is accelerate's and torch's own: the Trainer builds the plugin from the config,
Accelerator.prepare_model wraps the model in FSDP (FULL_SHARD, the configured layer classes),
sync_module_states broadcasts the first process's weights, cpu_ram_efficient_loading lets the
others load empty ones, and under mixed precision accelerate upcasts the shards to fp32.
"""

import os
import runpy
import sys
import types
from unittest import mock

import torch
from torch.distributed.fsdp import FullyShardedDataParallel, _init_utils, _state_dict_utils
from accelerate import state as accelerate_state
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils import dataclasses as accelerate_dataclasses

fsdp_init = FullyShardedDataParallel.__init__
unshard = _state_dict_utils._unshard_fsdp_state_params
plugin_post_init = FullyShardedDataParallelPlugin.__post_init__
state_init = accelerate_state.AcceleratorState.__init__


def post_init_on_cpu(self) -> None:
    cpu = types.SimpleNamespace(current_device=lambda: torch.device("cpu"))
    with mock.patch.object(accelerate_dataclasses, "is_neuron_available", lambda: True), mock.patch.object(torch, "neuron", cpu, create=True):
        plugin_post_init(self)


def state_init_on_cpu(self, *args, **kwargs) -> None:
    state_init(self, *args, **kwargs)
    plugin = kwargs.get("fsdp_plugin")
    use_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if self.distributed_type == DistributedType.MULTI_CPU and plugin is not None and use_fsdp:
        self.distributed_type = DistributedType.FSDP
        if self._mixed_precision != "no":
            plugin.set_mixed_precision(self._mixed_precision)
        self.fsdp_plugin = plugin
        accelerate_state.PartialState._shared_state["distributed_type"] = self.distributed_type


def fsdp_init_on_cpu(self, module, *args, device_id=None, **kwargs) -> None:
    if device_id is not None and torch.device(device_id).type == "cpu":
        device_id = torch.device("cpu")
    fsdp_init(self, module, *args, device_id=device_id, **kwargs)


def unshard_in_place(*args, offload_to_cpu: bool = False, **kwargs):
    return unshard(*args, offload_to_cpu=False, **kwargs)


FullyShardedDataParallel.__init__ = fsdp_init_on_cpu
_state_dict_utils._unshard_fsdp_state_params = unshard_in_place
_init_utils._check_module_states_for_sync_module_states = lambda module_states: None
FullyShardedDataParallelPlugin.__post_init__ = post_init_on_cpu
accelerate_state.AcceleratorState.__init__ = state_init_on_cpu

if __name__ == "__main__":
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
