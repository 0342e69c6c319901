"""A tiny Qwen2.5-VL built locally: BPE tokenizer on the synthetic text, image-only processor, model.

The result is a normal Hugging Face directory (config, safetensors, tokenizer, processor) that the
same `from_pretrained` code reloads as a real checkpoint. Importing this module registers the
image-only processor class with `AutoProcessor`, which every process that reloads it needs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AddedToken,
    AutoProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessorPil,
)

from tokencredit.atomic import atomic_path
from tokencredit.params import ModelParams

# Qwen's special tokens, in Qwen's order; <|im_end|> ends a turn (eos), <|endoftext|> pads.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Completion tags: ordinary (non-special) tokens, so decoding with skip_special_tokens keeps them.
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

# Qwen2-VL's template without the default system prompt (useless tokens for a model trained from
# scratch). Renders TRL's conversational format: content is a string or a list of
# {"type": "image"} / {"type": "text", "text": ...} parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PATCH_SIZE = 14
SPATIAL_MERGE = 2


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without a video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


# exist_ok: Qwen2_5_VLConfig already maps to the full processor. AutoProcessor picks the class a
# directory names (ours names this one); models.load_policy uses this class for any Qwen2.5-VL.
AutoProcessor.register(Qwen2_5_VLConfig, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)


def train_tokenizer(corpus: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `corpus`, with Qwen's special tokens and the completion tags."""
    if not corpus:
        raise ValueError("cannot train a tokenizer on an empty corpus")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Every prompt holds the role names: repeat them so they become single tokens.
    bpe.train_from_iterator(corpus + ["user\nassistant\n"] * len(corpus), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS,
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return tokenizer


def build_processor(tokenizer: PreTrainedTokenizerFast, model_params: ModelParams) -> ImageOnlyQwen2_5_VLProcessor:
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=model_params.min_pixels,
        max_pixels=model_params.max_pixels,
        patch_size=PATCH_SIZE,
        merge_size=SPATIAL_MERGE,
    )
    return ImageOnlyQwen2_5_VLProcessor(image_processor, tokenizer, chat_template=CHAT_TEMPLATE)


def build_config(tokenizer: PreTrainedTokenizerFast, model_params: ModelParams) -> Qwen2_5_VLConfig:
    head_dim = model_params.hidden_size // model_params.num_heads
    if head_dim % 2:
        raise ValueError(f"head_dim {head_dim} (hidden_size / num_heads) must be even for rotary embeddings")
    # M-RoPE splits head_dim/2 rotary frequencies over (time, height, width), as Qwen does 16:24:24.
    half = head_dim // 2
    spatial = (half * 3) // 8
    mrope_section = [half - 2 * spatial, spatial, spatial]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vision_heads = max(1, model_params.vision_hidden_size // 32)
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": model_params.hidden_size,
            "intermediate_size": model_params.intermediate_size,
            "num_hidden_layers": model_params.num_layers,
            "num_attention_heads": model_params.num_heads,
            "num_key_value_heads": model_params.num_kv_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": model_params.vision_depth,
            "hidden_size": model_params.vision_hidden_size,
            "intermediate_size": 2 * model_params.vision_hidden_size,
            "num_heads": vision_heads,
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": SPATIAL_MERGE,
            "out_hidden_size": model_params.hidden_size,
            "fullatt_block_indexes": [model_params.vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
        attn_implementation=model_params.attn_implementation,
    )


def build_base(model_params: ModelParams, corpus: list[str], out_dir: Path) -> None:
    """Train the tokenizer on `corpus`, initialise the model from `model_params.seed`, save to `out_dir`."""
    tokenizer = train_tokenizer(corpus, model_params.vocab_size)
    processor = build_processor(tokenizer, model_params)
    config = build_config(tokenizer, model_params)
    torch.manual_seed(model_params.seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
