"""Load a policy (the tiny local VLM, a real local checkpoint, or a LoRA adapter on one) as (model, processor).

A LoRA run's model directory holds the adapter (peft's adapter_config.json and
adapter_model.safetensors), the processor, and BASE_FILE: the policy it was trained from (a path
relative to the adapter's directory unless given absolute) and that policy's digest. The adapter
is a few MB where merged weights would be a whole model's copy (15 GB at 7B). Loading merges it
into the base: every consumer (rollouts, grading, scoring) then runs a plain model, equal to the
adapted one up to float rounding. The digest makes the directory's manifest, and so every cache
keyed on it, follow the base too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from accelerate.utils import is_peft_model
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from tokencredit.atomic import atomic_path
from tokencredit.manifest import manifest_path, policy_hash
from tokencredit.params import ModelParams
from tokencredit.plain_think import plain_think_tokenizer
from tokencredit.repeated_images import encode_repeated_images_once
from tokencredit.tiny_vlm import ImageOnlyQwen2_5_VLProcessor  # importing also registers it with AutoProcessor

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
BASE_FILE = "base_policy.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def is_adapter(path: Path) -> bool:
    """A LoRA run's model directory: an adapter on a base policy (see the module docstring)."""
    return (Path(path) / "adapter_config.json").is_file()


def check_checkpoint(path: Path) -> None:
    """Raise FileNotFoundError naming `path` and what a loadable model directory lacks."""
    if not path.is_dir():
        raise FileNotFoundError(f"policy checkpoint {path} does not exist or is not a directory")
    needed = [(name,) for name in (*ADAPTER_FILES, BASE_FILE)] if is_adapter(path) else [("config.json",), WEIGHT_FILES]
    missing = [" or ".join(names) for names in (*needed, TOKENIZER_FILES) if not any((path / n).is_file() for n in names)]
    if missing:
        raise FileNotFoundError(f"policy checkpoint {path} is incomplete: missing {'; '.join(missing)}")


def adapter_base(path: Path) -> Path:
    """The policy the adapter in `path` was trained from, after checking it is still that policy.

    A pipeline-built base is checked by its manifest; a local checkpoint, the params' fixed input,
    is not rehashed at every load (gigabytes).
    """
    reference = json.loads((path / BASE_FILE).read_text())
    base = Path(os.path.normpath(path / reference["path"]))  # an absolute path stays as it is
    check_checkpoint(base)
    if manifest_path(base).is_file() and policy_hash(base) != reference["digest"]:
        raise ValueError(
            f"LoRA adapter {path} was trained from {base}, which has changed since: retrain the adapter "
            f"(rerun its train job) or restore that base"
        )
    return base


def default_device() -> torch.device:
    """This process's GPU when CUDA is available, else the CPU.

    `accelerate launch` starts one process per GPU and gives each its LOCAL_RANK; a plain process
    (or one SLURM gave a single GPU) has none and takes the first visible GPU.
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def _load_model(path: Path, model_params: ModelParams) -> PreTrainedModel:
    """The model of a checkpoint, or of an adapter's base with the adapter merged into it."""
    if is_adapter(path):
        from peft import PeftModel  # only adapters need peft

        return PeftModel.from_pretrained(_load_model(adapter_base(path), model_params), path).merge_and_unload()
    trust = model_params.trust_remote_code
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust, local_files_only=True)
    return AutoModelForImageTextToText.from_pretrained(
        path, config=config, dtype="auto", attn_implementation=model_params.attn_implementation,
        trust_remote_code=trust, local_files_only=True,
    )  # fmt: skip


def load_policy(
    path: str | Path, model_params: ModelParams | None = None, device: str | torch.device | None = None, *, for_training: bool = False
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Model in eval mode on `device` (default: `default_device()`) and its processor, left-padding.

    `model_params` supplies the attention kernel, trust_remote_code and the image pixel bounds
    (without it: defaults, and the checkpoint's own pixel bounds). Weights keep their saved dtype.
    A LoRA adapter's directory loads as its base with the adapter merged in.

    `for_training`: the model stays where from_pretrained put it, for accelerate to place it on
    each process's device when it prepares it: moving it here would put every process's copy on
    one GPU before FSDP shards it. Under FSDP with cpu_ram_efficient_loading (and torch.distributed
    already up), from_pretrained reads the weights on the first process only, the others holding
    empty (meta) ones that FSDP fills from it.
    """
    path = Path(path)
    check_checkpoint(path)
    given = model_params is not None
    model_params = model_params or ModelParams()
    try:
        model = _load_model(path, model_params)
        # Real Qwen2.5-VL checkpoints name the full processor, whose video half needs torchvision;
        # the project feeds images only, so every Qwen2.5-VL loads the image-only processor.
        loader = ImageOnlyQwen2_5_VLProcessor if model.config.model_type == "qwen2_5_vl" else AutoProcessor
        processor = loader.from_pretrained(path, trust_remote_code=model_params.trust_remote_code, local_files_only=True)
    except Exception as err:  # corrupt weights raise library-specific errors: name the checkpoint
        raise ValueError(f"cannot load policy checkpoint {path}: {type(err).__name__}: {err}") from err
    if given:  # same images, same number of visual tokens, whatever the checkpoint's defaults
        processor.image_processor.size = {"shortest_edge": model_params.min_pixels, "longest_edge": model_params.max_pixels}
    processor.tokenizer.padding_side = "left"
    if model_params.plain_think_tokens:
        processor.tokenizer = plain_think_tokenizer(processor.tokenizer)
    encode_repeated_images_once(model)
    if not for_training:
        model = model.to(device or default_device())
    return model.eval(), processor


def save_policy(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    out_dir: str | Path,
    extra_files: dict[str, str] | None = None,
    base: str | Path | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Save a loadable policy directory atomically, with optional extra text files (e.g. a training log).

    A LoRA model (peft) saves its adapter and a reference to `base`, the policy it was trained from.
    `dtype`: the floating-point weights are saved in it, and config.json names it, so that what
    loads the policy (rollouts, scoring) computes as training did: bf16 after bf16 mixed-precision
    training, whose fp32 master weights would double the files and the rollouts' memory. None:
    as the model holds them. A LoRA adapter is saved as it is (a few MB).
    """
    with atomic_path(out_dir, directory=True) as tmp:
        if dtype is None or is_peft_model(model):
            model.save_pretrained(tmp)
        else:
            model.save_pretrained(tmp, state_dict=_state_dict_in(model, dtype))
            config = json.loads((tmp / "config.json").read_text())  # save_pretrained names the model's own dtype
            (tmp / "config.json").write_text(json.dumps({**config, "dtype": str(dtype).removeprefix("torch.")}, indent=2, sort_keys=True) + "\n")
        processor.save_pretrained(tmp)
        if is_adapter(tmp):
            if base is None:
                raise ValueError(f"saving the LoRA adapter {out_dir} needs the policy it was trained from (base)")
            _reference_base(tmp, Path(base), Path(out_dir))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)


def _state_dict_in(model: PreTrainedModel, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The model's state dict with floating-point tensors in `dtype`; tied weights (one storage) stay one tensor,
    which is how save_pretrained finds and drops the copies."""
    cast: dict[tuple, torch.Tensor] = {}
    state = {}
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and tensor.dtype != dtype:
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
            tensor = cast[key] if key in cast else cast.setdefault(key, tensor.to(dtype))
        state[name] = tensor
    return state


def _reference_base(adapter_dir: Path, base: Path, out_dir: Path) -> None:
    """Write BASE_FILE, and keep the adapter's files byte-stable: its manifest keys the caches."""
    reference = str(base) if base.is_absolute() else os.path.relpath(base, out_dir)
    (adapter_dir / BASE_FILE).write_text(json.dumps({"path": reference, "digest": policy_hash(base)}, indent=2) + "\n")
    (adapter_dir / "README.md").unlink(missing_ok=True)  # peft's empty model card, naming the base as it was loaded
    config_file = adapter_dir / "adapter_config.json"
    config = json.loads(config_file.read_text())
    if isinstance(config["target_modules"], list):  # peft holds a set: its order changes from process to process
        config["target_modules"] = sorted(config["target_modules"])
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def vision_token_ids(model: PreTrainedModel) -> list[int]:
    """Image/video placeholder tokens: sampled inside a completion, the model would read them as image slots."""
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return [i for i in (getattr(model.config, name, None) for name in names) if i is not None]
