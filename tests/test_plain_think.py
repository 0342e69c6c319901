"""<think>/</think> as plain text (model.plain_think_tokens), on a tokenizer laid out like Qwen3-VL's
(a byte-level vocabulary, the two tags added as non-special tokens after it) and through load_policy."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tokencredit.models import load_policy
from tokencredit.params import ModelParams
from tokencredit.plain_think import plain_think_tokenizer


def qwen_like() -> PreTrainedTokenizerFast:
    """Byte-level pieces, Qwen's special tokens, then "<think>"/"</think>" added non-special, as in
    Qwen3-VL-*-Instruct's tokenizer.json (ids 151667/151668 there)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(alphabet))}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.chat_template = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    return tokenizer


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_think_tags_become_plain_text_and_nothing_else_changes():
    original = qwen_like()
    plain = plain_think_tokenizer(original)
    assert len(ids(original, "<think>")) == 1 and len(ids(plain, "<think>")) == len("<think>")
    assert "<think>" not in plain.get_added_vocab() and "</think>" not in plain.get_added_vocab()
    text = "<|im_start|>so x = 2<|im_end|>"
    assert ids(plain, text) == ids(original, text) and plain.chat_template == original.chat_template
    response = "<think>x is 2</think> \\boxed{2}"
    assert plain.decode(ids(plain, response), skip_special_tokens=True) == response
    assert plain_think_tokenizer(plain) is plain  # already plain: unchanged, as a policy saved with it reloads
    assert len(ids(original, "<think>")) == 1  # the original is left as it was


def test_load_policy_applies_it(tiny_world):
    _, base = tiny_world
    _, processor = load_policy(base, ModelParams(), device="cpu")
    _, plain = load_policy(base, ModelParams(plain_think_tokens=True), device="cpu")
    assert len(ids(processor.tokenizer, "<think>")) == 1 < len(ids(plain.tokenizer, "<think>"))
    assert plain.tokenizer.padding_side == "left"
