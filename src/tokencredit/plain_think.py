"""<think> and </think> as plain text, for checkpoints that never trained them as tokens.

Qwen3-VL-*-Instruct ships "<think>" and "</think>" as added (non-special) tokens, ids 151667 and
151668, that the Instruct checkpoint never learned: a prompt asking for "<think> </think>" and a
response writing them would go through two untrained embeddings. The awesome-perception-aware-rlvr
fork's controlled comparison tokenizes them as plain text instead ("<think>" -> "<", "think", ">";
its verl/utils/plain_think.py, model.plain_think_tokens=auto), and so does `model.plain_think_tokens`.
The tokenizer is rebuilt without the two added tokens; every other token keeps its id, so a policy
saved with it reloads the same way (and this is then a no-op).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

THINK_TOKENS = ("<think>", "</think>")


def plain_think_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """`tokenizer` without <think>/</think> as added tokens (itself when it has none)."""
    if not set(THINK_TOKENS) & set(tokenizer.get_added_vocab()):
        return tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for name, key in (("tokenizer.json", "added_tokens"), ("tokenizer_config.json", "added_tokens_decoder")):
            path = Path(tmp) / name
            if not path.is_file():
                continue
            data = json.loads(path.read_text())
            entries = data.get(key)
            if isinstance(entries, list):
                data[key] = [t for t in entries if t["content"] not in THINK_TOKENS]
            elif isinstance(entries, dict):
                data[key] = {i: t for i, t in entries.items() if t["content"] not in THINK_TOKENS}
            path.write_text(json.dumps(data))
        plain = AutoTokenizer.from_pretrained(tmp, local_files_only=True)
    plain.padding_side = tokenizer.padding_side
    return plain
