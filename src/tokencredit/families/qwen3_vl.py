"""Qwen3-VL: Qwen2.5-VL's layout with 16-px patches, a vision tower that also returns DeepStack
features (merged tokens of tapped vision layers, added to the first decoder layers' hidden
states), and a head_dim set apart from hidden_size / heads.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoProcessor, Qwen3VLConfig, Qwen3VLProcessor

from tokencredit.families import register
from tokencredit.families.qwen2_5_vl import Qwen2_5_VL


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3-VL processor without a video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


AutoProcessor.register(Qwen3VLConfig, ImageOnlyQwen3VLProcessor, exist_ok=True)


class Qwen3_VL(Qwen2_5_VL):
    name = "qwen3_vl"
    model_types = ("qwen3_vl",)
    decoder_layers = ("Qwen3VLTextDecoderLayer",)
    vision_blocks = ("Qwen3VLVisionBlock",)
    patch_size = 16
    processor_class = ImageOnlyQwen3VLProcessor
    config_class = Qwen3VLConfig

    def text_config(self, tokenizer: Any, model_params: Any) -> dict[str, Any]:
        text = super().text_config(tokenizer, model_params)
        text["head_dim"] = model_params.hidden_size // model_params.num_heads
        text["rope_parameters"] = {**text["rope_parameters"], "mrope_interleaved": True}
        return text

    def vision_config(self, model_params: Any) -> dict[str, Any]:
        vision = super().vision_config(model_params)
        del vision["fullatt_block_indexes"]  # Qwen3-VL's tower attends globally in every block
        # An 8 x 8 learned position grid, resampled to each image's; DeepStack taps the first block.
        return {**vision, "num_position_embeddings": 64, "deepstack_visual_indexes": [0]}

    def tiny_config(self, tokenizer: Any, model_params: Any) -> Any:
        return self.config_class(
            text_config=self.text_config(tokenizer, model_params),
            vision_config=self.vision_config(model_params),
            tie_word_embeddings=True,
            attn_implementation=model_params.attn_implementation,
            **self.token_ids(tokenizer),
        )


QWEN3_VL = register(Qwen3_VL())
