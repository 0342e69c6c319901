"""Qwen3.5: Qwen3-VL's image path (same processor, 16-px patches, no DeepStack) on a hybrid
decoder: three Gated DeltaNet (linear attention) layers to one full-attention layer, whose rotary
embedding covers a quarter of head_dim.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoProcessor, Qwen3_5Config

from tokencredit.families import register
from tokencredit.families.qwen2_5_vl import mrope_section
from tokencredit.families.qwen3_vl import ImageOnlyQwen3VLProcessor, Qwen3_VL

AutoProcessor.register(Qwen3_5Config, ImageOnlyQwen3VLProcessor, exist_ok=True)

PARTIAL_ROTARY = 0.25  # Qwen3.5's default: rope on a quarter of each head


class Qwen3_5(Qwen3_VL):
    name = "qwen3_5"
    model_types = ("qwen3_5",)
    decoder_layers = ("Qwen3_5DecoderLayer",)
    vision_blocks = ("Qwen3_5VisionBlock",)
    config_class = Qwen3_5Config

    def text_config(self, tokenizer: Any, model_params: Any) -> dict[str, Any]:
        text = super().text_config(tokenizer, model_params)
        head_dim = text["head_dim"]
        text["rope_parameters"] = {
            **text["rope_parameters"],
            "partial_rotary_factor": PARTIAL_ROTARY,
            "mrope_section": mrope_section(int(head_dim * PARTIAL_ROTARY)),
        }
        linear_heads = max(1, model_params.num_kv_heads)
        return {
            **text,
            "linear_key_head_dim": head_dim,
            "linear_value_head_dim": head_dim,
            "linear_num_key_heads": linear_heads,
            "linear_num_value_heads": 2 * linear_heads,
        }

    def vision_config(self, model_params: Any) -> dict[str, Any]:
        vision = super().vision_config(model_params)
        del vision["deepstack_visual_indexes"]
        return vision


QWEN3_5 = register(Qwen3_5())
