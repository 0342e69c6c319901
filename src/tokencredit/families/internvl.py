"""InternVL3 in transformers' native format (model type `internvl`, e.g. OpenGVLab/InternVL3-2B-hf).

Each image is resized and cut into square tiles (`crop_to_patches`, plus a thumbnail when there
are several); pixel_values is [tiles, C, H, W] with no `image_grid_thw`. The processor writes
`<img>` + `image_seq_length` x `<IMG_CONTEXT>` per tile + `</img>` for each image, so a response's
tiles are its placeholder count / image_seq_length, which is how chunked scoring slices them.
The vision tower (InternViT, 14-px patches) encodes each tile alone; a pixel shuffle and an MLP
project its output to the decoder (Qwen2.5's architecture in InternVL3).
"""

from __future__ import annotations

import math
from typing import Any

from transformers import AutoProcessor, InternVLConfig, InternVLProcessor
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

from tokencredit.families import Family, PatchLayout, register
from tokencredit.families.qwen2_5_vl import QWEN_SPECIAL_TOKENS, tiny_decoder
from tokencredit.repeated_images import hook_tile_tower

PATCH_SIZE = 14  # InternViT's patch, every InternVL3 size
DOWNSAMPLE = 0.5  # pixel shuffle: 2 x 2 patches per image token
# The tokenizer attributes InternVLProcessor reads (InternVL3-hf's tokenizer_config extra_special_tokens).
IMAGE_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}


class ImageOnlyInternVLProcessor(InternVLProcessor):
    """InternVL processor without a video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, image_seq_length: int = 256, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, image_seq_length=image_seq_length, chat_template=chat_template, **kwargs)


AutoProcessor.register(InternVLConfig, ImageOnlyInternVLProcessor, exist_ok=True)


def tile_side(pixels: int) -> int:
    """The largest tile side at most sqrt(pixels) that the patches and the pixel shuffle divide."""
    step = int(PATCH_SIZE / DOWNSAMPLE)
    return max(step, math.isqrt(pixels) // step * step)


class InternVL(Family):
    name = "internvl"
    model_types = ("internvl",)
    decoder_layers = ("Qwen2DecoderLayer",)
    vision_blocks = ("InternVLVisionLayer",)
    special_tokens = (*QWEN_SPECIAL_TOKENS, *IMAGE_TOKENS.values())
    extra_special_tokens = IMAGE_TOKENS
    image_placeholder = "<IMG_CONTEXT>"

    def tiny_config(self, tokenizer: Any, model_params: Any) -> Any:
        side = tile_side(model_params.min_pixels)
        return InternVLConfig(
            vision_config={
                "hidden_size": model_params.vision_hidden_size,
                "num_hidden_layers": model_params.vision_depth,
                "num_attention_heads": max(1, model_params.vision_hidden_size // 32),
                "intermediate_size": 2 * model_params.vision_hidden_size,
                "image_size": [side, side],
                "patch_size": [PATCH_SIZE, PATCH_SIZE],
            },
            text_config={"model_type": "qwen2", **tiny_decoder(tokenizer, model_params), "tie_word_embeddings": True},
            image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["context_image_token"]),
            image_seq_length=self._tokens_per_tile(side),
            downsample_ratio=DOWNSAMPLE,
            tie_word_embeddings=True,
            attn_implementation=model_params.attn_implementation,
        )

    def processor(self, tokenizer: Any, model_params: Any) -> Any:
        side = tile_side(model_params.min_pixels)
        image_processor = GotOcr2ImageProcessorPil(
            size={"height": side, "width": side}, crop_to_patches=True, min_patches=1, max_patches=max(1, model_params.max_pixels // side**2)
        )
        return ImageOnlyInternVLProcessor(image_processor, tokenizer, self._tokens_per_tile(side), chat_template=tokenizer.chat_template)

    def load_processor(self, path: Any, model_params: Any | None) -> Any:
        trust = model_params is not None and model_params.trust_remote_code
        processor = ImageOnlyInternVLProcessor.from_pretrained(path, trust_remote_code=trust, local_files_only=True)
        if model_params is not None:  # the tiles are fixed squares: max_pixels bounds how many an image gets
            size = processor.image_processor.size
            processor.image_processor.max_patches = max(1, model_params.max_pixels // (size["height"] * size["width"]))
        return processor

    def blocked_token_ids(self, config: Any) -> list[int]:
        # Only <IMG_CONTEXT> takes an image embedding; <img>/</img> sampled in a completion are plain tokens.
        return [config.image_token_id]

    def vision_tower(self, model: Any) -> Any:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        return getattr(getattr(model, "model", None), "vision_tower", None)

    def patch_layout(self, processor: Any) -> PatchLayout:
        return PatchLayout(PATCH_SIZE, channels=len(processor.image_processor.image_mean), grid_key=None)

    def image_offsets(self, config: Any, batch: dict[str, Any]) -> tuple[list[int], list[int]]:
        per_tile = config.image_seq_length
        tiles = [0]
        for row, n in enumerate((batch["prompt_ids"] == config.image_token_id).sum(1).tolist()):
            if n % per_tile:
                raise ValueError(f"batch row {row}: its {n} image tokens are not whole tiles of {per_tile}")
            tiles.append(tiles[-1] + n // per_tile)
        if tiles[-1] != len(batch["pixel_values"]):
            raise ValueError(f"the batch's image tokens make {tiles[-1]} tiles, but pixel_values holds {len(batch['pixel_values'])}")
        return tiles, tiles

    def encode_repeated_images_once(self, model: Any) -> None:
        hook_tile_tower(self.vision_tower(model))

    def _tokens_per_tile(self, side: int) -> int:
        return int((side // PATCH_SIZE) ** 2 * DOWNSAMPLE**2)


INTERNVL = register(InternVL())
