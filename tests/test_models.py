"""The tiny VLM: build, save, reload; chat template; loss batches; clear errors for bad checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tokencredit import synthetic
from tokencredit.batching import IGNORE_INDEX, encode_for_loss, encode_prompts
from tokencredit.dataset import load_image, load_split
from tokencredit.models import load_policy, save_policy
from tokencredit.params import DataParams, ModelParams
from tokencredit.tiny_vlm import build_base

SMALL = ModelParams(
    hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
    vision_depth=1, vision_hidden_size=32, vocab_size=300,
)  # fmt: skip
DATA = DataParams(n_train=24, n_validation=4, n_test=4, n_test_ood=4)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data")
    synthetic.write_splits(DATA, path)
    return path


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "base"
    build_base(SMALL, synthetic.corpus(DATA), path)
    return path


def test_build_is_seeded_and_reload_gives_identical_logits(base_dir, data_dir, tmp_path):
    build_base(SMALL, synthetic.corpus(DATA), tmp_path / "again")
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (base_dir / "model.safetensors").read_bytes()

    model, processor = load_policy(base_dir, SMALL)
    assert model.config._attn_implementation == "sdpa" and not model.training
    rows = load_split(data_dir, "train").head(2)
    batch = encode_prompts(processor, list(rows["question"]), [load_image(data_dir, r) for r in rows["image"]])
    model.save_pretrained(tmp_path / "copy")
    processor.save_pretrained(tmp_path / "copy")
    copy, copy_processor = load_policy(tmp_path / "copy", SMALL)
    again = encode_prompts(copy_processor, list(rows["question"]), [load_image(data_dir, r) for r in rows["image"]])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, copy(**again).logits)


def test_chat_template_and_tags(base_dir):
    _, processor = load_policy(base_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many red shapes are there?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How many red shapes are there?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    tokenizer = processor.tokenizer
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    ids = tokenizer("<think>red blue. red 1</think><answer>1</answer><|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>red blue. red 1</think><answer>1</answer>"
    assert all(len(tokenizer(tag, add_special_tokens=False)["input_ids"]) == 1 for tag in ("<think>", "</answer>"))


def test_encode_for_loss_masks_prompt_and_padding(base_dir, data_dir):
    model, processor = load_policy(base_dir)
    rows = load_split(data_dir, "train").head(3)
    questions = list(rows["question"])
    images = [load_image(data_dir, r) for r in rows["image"]]
    targets = ["<think>red. red 1</think><answer>1</answer>", "<think>x</think><answer>0</answer>", list(rows["target"])[2]]
    batch = encode_for_loss(processor, questions, images, targets)
    width = batch["completion_mask"].shape[1]
    prompt_width = batch["input_ids"].shape[1] - width
    assert (batch["labels"][:, :prompt_width] == IGNORE_INDEX).all()
    for row, target in enumerate(targets):
        n = int(batch["completion_mask"][row].sum())
        expected = processor.tokenizer(target + "<|im_end|>", add_special_tokens=False)["input_ids"]
        assert batch["labels"][row, prompt_width : prompt_width + n].tolist() == expected
        assert (batch["labels"][row, prompt_width + n :] == IGNORE_INDEX).all()
    assert batch["pixel_values"].shape[0] == int(batch["image_grid_thw"].prod(dim=1).sum())

    # Padding does not change the completion's log-probs: batched rows equal one-row batches.
    def completion_logps(b):
        mask = b["completion_mask"]
        with torch.no_grad():
            logits = model(**{k: v for k, v in b.items() if k not in ("labels", "completion_mask")}).logits
        ids = b["input_ids"][:, -mask.shape[1] :]
        logps = torch.log_softmax(logits[:, -mask.shape[1] - 1 : -1], -1).gather(2, ids[..., None])[..., 0]
        return logps, mask

    logps, mask = completion_logps(batch)
    for row in range(3):
        one_row = slice(row, row + 1)
        one, one_mask = completion_logps(encode_for_loss(processor, questions[one_row], images[one_row], targets[one_row]))
        n = int(one_mask.sum())
        torch.testing.assert_close(logps[row, :n], one[0, :n], atol=1e-5, rtol=0)

    text_only = encode_for_loss(processor, questions, None, targets)
    assert "pixel_values" not in text_only
    assert torch.equal(text_only["labels"][:, -width:], batch["labels"][:, -width:])
    assert torch.equal(text_only["completion_mask"], batch["completion_mask"])

    # One prompt without its image in an otherwise multimodal batch: that row equals the text-only row.
    mixed = encode_for_loss(processor, questions, [images[0], None, images[2]], targets)
    assert mixed["image_grid_thw"].shape[0] == 2
    mixed_logps, _ = completion_logps(mixed)
    text_logps, _ = completion_logps(text_only)
    n0, n1 = (int(m) for m in text_only["completion_mask"][:2].sum(dim=1))
    torch.testing.assert_close(mixed_logps[0, :n0], logps[0, :n0], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed_logps[1, :n1], text_logps[1, :n1], atol=1e-5, rtol=0)


def test_token_id_completions_are_used_as_given(base_dir):
    _, processor = load_policy(base_dir)
    batch = encode_for_loss(processor, ["How many red shapes are there?"], None, [[5, 6, 7]])
    assert batch["labels"][0, -3:].tolist() == [5, 6, 7]


def test_load_policy_errors_name_the_path_and_the_missing_file(base_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        load_policy(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((base_dir / name).read_bytes())
    with pytest.raises(FileNotFoundError, match=r"broken.*model\.safetensors"):
        load_policy(broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="broken.*header"):
        load_policy(broken)


def test_a_checkpoint_naming_the_full_qwen_processor_loads_without_torchvision(base_dir, tmp_path):
    # Real Qwen2.5-VL checkpoints name Qwen2_5_VLProcessor, whose video processor needs torchvision.
    real = tmp_path / "real"
    real.mkdir()
    for file in base_dir.iterdir():
        text_or_bytes = file.read_bytes()
        if file.name in ("processor_config.json", "tokenizer_config.json"):
            text_or_bytes = text_or_bytes.replace(b"ImageOnlyQwen2_5_VLProcessor", b"Qwen2_5_VLProcessor")
        (real / file.name).write_bytes(text_or_bytes)
    model, processor = load_policy(real)
    assert processor.image_processor is not None and processor.tokenizer.padding_side == "left"


def test_each_process_loads_onto_its_own_gpu_and_training_leaves_placement_to_accelerate(base_dir, monkeypatch):
    """Under `accelerate launch` every process has a LOCAL_RANK: the second one's policy belongs on
    cuda:1, and a training policy stays unmoved until accelerate prepares (places, shards) it."""
    moved_to = []

    def record_move(module, *args, **kwargs):  # no GPU here: record where the model would go
        moved_to.append(torch.device(args[0] if args else kwargs["device"]))
        return module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.nn.Module, "to", record_move)
    monkeypatch.setenv("LOCAL_RANK", "1")
    load_policy(base_dir, SMALL)
    assert moved_to == [torch.device("cuda", 1)]
    moved_to.clear()
    model, _ = load_policy(base_dir, SMALL, for_training=True)
    assert moved_to == [] and model.device == torch.device("cpu")


def test_a_policy_saved_in_the_compute_dtype_loads_in_it(base_dir, tmp_path):
    """bf16 mixed precision trains fp32 master weights; the saved policy is bf16 (config included),
    tied weights stay tied, and every weight is the fp32 one rounded."""
    model, processor = load_policy(base_dir, SMALL)
    save_policy(model, processor, tmp_path / "bf16", dtype=torch.bfloat16)
    saved, _ = load_policy(tmp_path / "bf16", SMALL)
    assert saved.dtype == torch.bfloat16 and json.loads((tmp_path / "bf16/config.json").read_text())["dtype"] == "bfloat16"
    assert saved.state_dict().keys() == model.state_dict().keys()
    assert saved.lm_head.weight.data_ptr() == saved.get_input_embeddings().weight.data_ptr()
    for name, tensor in model.state_dict().items():
        assert torch.equal(saved.state_dict()[name], tensor.to(saved.state_dict()[name].dtype)), name
