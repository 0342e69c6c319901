"""Load a policy (the tiny local VLM or a real local checkpoint) as (model, processor)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from tokencredit.atomic import atomic_path
from tokencredit.params import ModelParams
from tokencredit.tiny_vlm import ImageOnlyQwen2_5_VLProcessor  # importing also registers it with AutoProcessor

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def check_checkpoint(path: Path) -> None:
    """Raise FileNotFoundError naming `path` and what a loadable model directory lacks."""
    if not path.is_dir():
        raise FileNotFoundError(f"policy checkpoint {path} does not exist or is not a directory")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise FileNotFoundError(f"policy checkpoint {path} is incomplete: missing {'; '.join(missing)}")


def load_policy(
    path: str | Path, model_params: ModelParams | None = None, device: str | torch.device | None = None
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Model in eval mode on `device` (default: CUDA when available) and its processor, left-padding.

    `model_params` supplies the attention kernel, trust_remote_code and the image pixel bounds
    (without it: defaults, and the checkpoint's own pixel bounds). Weights keep their saved dtype.
    """
    path = Path(path)
    check_checkpoint(path)
    given = model_params is not None
    model_params = model_params or ModelParams()
    trust = model_params.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(
            path, config=config, dtype="auto", attn_implementation=model_params.attn_implementation,
            trust_remote_code=trust, local_files_only=True,
        )  # fmt: skip
        # Real Qwen2.5-VL checkpoints name the full processor, whose video half needs torchvision;
        # the project feeds images only, so every Qwen2.5-VL loads the image-only processor.
        loader = ImageOnlyQwen2_5_VLProcessor if config.model_type == "qwen2_5_vl" else AutoProcessor
        processor = loader.from_pretrained(path, trust_remote_code=trust, local_files_only=True)
    except Exception as err:  # corrupt weights raise library-specific errors: name the checkpoint
        raise ValueError(f"cannot load policy checkpoint {path}: {type(err).__name__}: {err}") from err
    if given:  # same images, same number of visual tokens, whatever the checkpoint's defaults
        processor.image_processor.size = {"shortest_edge": model_params.min_pixels, "longest_edge": model_params.max_pixels}
    processor.tokenizer.padding_side = "left"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), processor


def save_policy(
    model: PreTrainedModel, processor: ProcessorMixin, out_dir: str | Path, extra_files: dict[str, str] | None = None
) -> None:
    """Save a loadable policy directory atomically, with optional extra text files (e.g. a training log)."""
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)


def vision_token_ids(model: PreTrainedModel) -> list[int]:
    """Image/video placeholder tokens: sampled inside a completion, the model would read them as image slots."""
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return [i for i in (getattr(model.config, name, None) for name in names) if i is not None]
