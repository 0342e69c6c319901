"""A tiny VLM of any model family built locally: BPE tokenizer on the synthetic text, image-only processor, model.

The result is a normal Hugging Face directory (config, safetensors, tokenizer, processor) that the
same `from_pretrained` code reloads as a real checkpoint. The family (`model.family`) decides the
architecture, the processor and the image placeholder; importing `tokencredit.families` registers
each family's image-only processor class with `AutoProcessor`, which every process that reloads
one needs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AddedToken, PreTrainedTokenizerFast

from tokencredit.atomic import atomic_path
from tokencredit.families import Family, family_named
from tokencredit.params import ModelParams

# Completion tags: ordinary (non-special) tokens, so decoding with skip_special_tokens keeps them.
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]


def chat_template(image_placeholder: str) -> str:
    """Qwen2-VL's template without the default system prompt (useless tokens for a model trained from
    scratch), writing `image_placeholder` for an image. Renders TRL's conversational format: content
    is a string or a list of {"type": "image"} / {"type": "text", "text": ...} parts."""
    return (
        "{% for message in messages %}"
        "<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for part in message['content'] %}"
        f"{{% if part['type'] == 'image' %}}{image_placeholder}"
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}"
        "<|im_end|>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def train_tokenizer(corpus: list[str], vocab_size: int, family: Family) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `corpus`, with the family's special tokens, chat template and the completion tags."""
    if not corpus:
        raise ValueError("cannot train a tokenizer on an empty corpus")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(family.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Every prompt holds the role names: repeat them so they become single tokens.
    bpe.train_from_iterator(corpus + ["user\nassistant\n"] * len(corpus), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(family.special_tokens),
        extra_special_tokens=dict(family.extra_special_tokens),
        chat_template=chat_template(family.image_placeholder),
        model_max_length=4096,
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return tokenizer


def build_base(model_params: ModelParams, corpus: list[str], out_dir: Path) -> None:
    """Train the tokenizer on `corpus`, initialise the family's model from `model_params.seed`, save to `out_dir`."""
    family = family_named(model_params.family)
    tokenizer = train_tokenizer(corpus, model_params.vocab_size, family)
    processor = family.processor(tokenizer, model_params)
    config = family.tiny_config(tokenizer, model_params)
    torch.manual_seed(model_params.seed)
    model = family.tiny_model(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
