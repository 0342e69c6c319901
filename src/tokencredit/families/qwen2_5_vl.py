"""Qwen2.5-VL, and the Qwen2-VL-style parts Qwen3-VL and Qwen3.5 inherit.

A Qwen2-VL-style model keeps its vision tower at `model.model.visual(pixel_values, grid_thw)`;
its processor cuts each image into `patch_size`² patches (`PatchLayout`), one pixel_values row
each, and writes `image_grid_thw`; each image takes grid.prod() / merge² placeholder tokens.
"""

from __future__ import annotations

from typing import Any, ClassVar

from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil

from tokencredit.families import Family, PatchLayout, register
from tokencredit.repeated_images import hook_grid_tower

# Qwen's special tokens, in Qwen's order; <|im_end|> ends a turn (eos), <|endoftext|> pads.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)



def tiny_decoder(tokenizer: Any, model_params: Any) -> dict[str, Any]:
    """The tiny Qwen2-style decoder of params.ModelParams (InternVL3's language model is one too)."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": model_params.hidden_size,
        "intermediate_size": model_params.intermediate_size,
        "num_hidden_layers": model_params.num_layers,
        "num_attention_heads": model_params.num_heads,
        "num_key_value_heads": model_params.num_kv_heads,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "bos_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }

class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without a video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


# exist_ok: the config already maps to the full processor. AutoProcessor picks the class a
# directory names (the tiny model's names this one); load_processor uses it for any checkpoint.
AutoProcessor.register(Qwen2_5_VLConfig, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)


def mrope_section(rotary_dim: int) -> list[int]:
    """M-RoPE splits rotary_dim/2 frequencies over (time, height, width), as Qwen does 16:24:24."""
    half = rotary_dim // 2
    spatial = (half * 3) // 8
    return [half - 2 * spatial, spatial, spatial]


class Qwen2_5_VL(Family):
    name = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    decoder_layers = ("Qwen2_5_VLDecoderLayer",)
    vision_blocks = ("Qwen2_5_VLVisionBlock",)
    special_tokens = QWEN_SPECIAL_TOKENS
    image_placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    patch_size: ClassVar[int] = 14
    processor_class: ClassVar[type] = ImageOnlyQwen2_5_VLProcessor

    def token_ids(self, tokenizer: Any) -> dict[str, int]:
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
        return {
            "image_token_id": ids["<|image_pad|>"],
            "video_token_id": ids["<|video_pad|>"],
            "vision_start_token_id": ids["<|vision_start|>"],
            "vision_end_token_id": ids["<|vision_end|>"],
        }

    def text_config(self, tokenizer: Any, model_params: Any) -> dict[str, Any]:
        head_dim = model_params.hidden_size // model_params.num_heads
        if head_dim % 2:
            raise ValueError(f"head_dim {head_dim} (hidden_size / num_heads) must be even for rotary embeddings")
        text = tiny_decoder(tokenizer, model_params)
        text["rope_parameters"]["mrope_section"] = mrope_section(head_dim)
        return text

    def vision_config(self, model_params: Any) -> dict[str, Any]:
        return {
            "depth": model_params.vision_depth,
            "hidden_size": model_params.vision_hidden_size,
            "intermediate_size": 2 * model_params.vision_hidden_size,
            "num_heads": max(1, model_params.vision_hidden_size // 32),
            "patch_size": self.patch_size,
            "spatial_merge_size": 2,
            "out_hidden_size": model_params.hidden_size,
            "fullatt_block_indexes": [model_params.vision_depth - 1],
        }

    def tiny_config(self, tokenizer: Any, model_params: Any) -> Any:
        return Qwen2_5_VLConfig(
            text_config=self.text_config(tokenizer, model_params),
            vision_config=self.vision_config(model_params),
            tie_word_embeddings=True,
            attn_implementation=model_params.attn_implementation,
            **self.token_ids(tokenizer),
        )

    def processor(self, tokenizer: Any, model_params: Any) -> Any:
        image_processor = Qwen2VLImageProcessorPil(
            min_pixels=model_params.min_pixels, max_pixels=model_params.max_pixels, patch_size=self.patch_size, merge_size=2
        )
        return self.processor_class(image_processor, tokenizer, chat_template=tokenizer.chat_template)

    def load_processor(self, path: Any, model_params: Any | None) -> Any:
        trust = model_params is not None and model_params.trust_remote_code
        processor = self.processor_class.from_pretrained(path, trust_remote_code=trust, local_files_only=True)
        if model_params is not None:  # same images, same number of visual tokens, whatever the checkpoint's defaults
            processor.image_processor.size = {"shortest_edge": model_params.min_pixels, "longest_edge": model_params.max_pixels}
        return processor

    def blocked_token_ids(self, config: Any) -> list[int]:
        names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
        return [i for i in (getattr(config, name, None) for name in names) if i is not None]

    def vision_tower(self, model: Any) -> Any:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        return getattr(getattr(model, "model", None), "visual", None)

    def patch_layout(self, processor: Any) -> PatchLayout:
        ip = processor.image_processor
        return PatchLayout(ip.patch_size, ip.merge_size, ip.temporal_patch_size, len(ip.image_mean))

    def image_offsets(self, config: Any, batch: dict[str, Any]) -> tuple[list[int], list[int]]:
        grid = batch["image_grid_thw"]
        merge = config.vision_config.spatial_merge_size
        tokens_per_image = (grid.prod(-1) // merge**2).tolist()
        rows_per_image = grid.prod(-1).tolist()
        image_tokens = (batch["prompt_ids"] == self.image_token_id(config)).sum(1).tolist()
        images, pixels, image = [0], [0], 0
        for row, want in enumerate(image_tokens):
            have, rows = 0, 0
            while have < want and image < len(tokens_per_image):
                have, rows, image = have + tokens_per_image[image], rows + rows_per_image[image], image + 1
            if have != want:
                raise ValueError(f"batch row {row}: its {want} image tokens do not match image_grid_thw")
            images.append(image)
            pixels.append(pixels[-1] + rows)
        return images, pixels

    def encode_repeated_images_once(self, model: Any) -> None:
        hook_grid_tower(self.vision_tower(model))


QWEN2_5_VL = register(Qwen2_5_VL())
