from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from PIL import Image
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from tokencredit.params import DataParams
from tokencredit.synthetic import (
    COLORS,
    COLUMNS,
    FILLER_OPENERS,
    FILLER_WORDS,
    NOISE_WORDS,
    SHAPES,
    SPLITS,
    box_text,
    completion_role_spans,
    corpus,
    make_examples,
    render,
    token_roles,
    write_splits,
)

FAMILIES = ["count_color", "count_shape", "exists", "compare", "sum_digits"]
SMALL = DataParams(families=FAMILIES, n_train=20, n_validation=5, n_test=5, n_test_ood=10)


def split_bytes(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file()}


def test_write_splits_is_deterministic(tmp_path):
    write_splits(SMALL, tmp_path / "a")
    write_splits(SMALL, tmp_path / "b")
    write_splits(SMALL.model_copy(update={"seed": 1}), tmp_path / "c")
    a, b, c = split_bytes(tmp_path / "a"), split_bytes(tmp_path / "b"), split_bytes(tmp_path / "c")
    assert len(a) == 4 + 20 + 5 + 5 + 10
    assert a == b
    assert a.keys() == c.keys() and a["train.parquet"] != c["train.parquet"]


def test_written_split_columns_and_images(tmp_path):
    write_splits(SMALL, tmp_path)
    for split in SPLITS:
        frame = pd.read_parquet(tmp_path / f"{split}.parquet")
        assert list(frame.columns) == list(COLUMNS)
        assert len(frame) == getattr(SMALL, f"n_{split}")
        assert frame["id"].is_unique and (frame["split"] == split).all()
        assert set(frame["answer_type"]) <= {"integer", "yes_no"}
        for rel in frame["image"]:
            with Image.open(tmp_path / rel) as image:
                assert image.size == (SMALL.image_size, SMALL.image_size) and image.mode == "RGB"


def test_ood_has_more_objects():
    ind = [len(e.shapes) for e in make_examples(SMALL, "train")]
    ood = [len(e.shapes) for e in make_examples(SMALL, "test_ood")]
    assert min(ind) >= SMALL.min_objects and max(ind) <= SMALL.max_objects
    assert min(ood) >= SMALL.ood_min_objects and max(ood) <= SMALL.ood_max_objects
    assert min(ood) > max(ind)


def expected_answer(question: str, family: str, shapes) -> str:
    """Recount the answer from the scene, parsing the question independently of the generator."""
    words = question.rstrip("?").split()
    colors = [s.color for s in shapes]
    if family == "count_color":
        return str(colors.count(words[2]))
    if family == "count_shape":
        return str([s.shape + "s" for s in shapes].count(words[2]))
    if family == "exists":
        return "yes" if any((s.color, s.shape) == (words[3], words[4]) for s in shapes) else "no"
    if family == "compare":
        return "yes" if colors.count(words[3]) > colors.count(words[6]) else "no"
    return str(sum(s.digit for s in shapes))


@pytest.mark.parametrize("split", ["train", "test_ood"])
def test_answers_are_correct_by_construction(split):
    examples = make_examples(SMALL, split)
    assert {e.family for e in examples} == set(FAMILIES)
    for e in examples:
        assert e.answer == expected_answer(e.question, e.family, e.shapes), e.id
        assert e.target.endswith(f"<answer>{e.answer}</answer>")
        assert e.answer_type == ("yes_no" if e.family in ("exists", "compare") else "integer")


def test_perception_words_list_every_object_in_scan_order():
    for e in make_examples(SMALL, "train"):
        perceived = [e.target[s:t] for s, t, r in e.role_spans if r == "perception"]
        cells = [s.cell for s in e.shapes]
        assert cells == sorted(cells)
        if e.family in ("count_color", "compare"):
            assert perceived == [s.color for s in e.shapes]
        elif e.family == "count_shape":
            assert perceived == [s.shape for s in e.shapes]
        elif e.family == "exists":
            assert perceived == [w for s in e.shapes for w in (s.color, s.shape)]
        else:
            assert perceived == [str(s.digit) for s in e.shapes]
            assert all(1 <= s.digit <= 9 for s in e.shapes)
        if e.family != "sum_digits":
            assert all(s.digit is None for s in e.shapes)


def test_image_shows_the_listed_colours():
    for e in make_examples(SMALL.model_copy(update={"families": ["count_color"]}), "test_ood"):
        pixels = np.asarray(render(e.shapes, SMALL.image_size))
        for s in e.shapes:
            # The centroid lies inside every shape (a triangle's is below its box centre).
            y = int(s.cy + (s.size / 6 if s.shape == "triangle" else 0))
            assert tuple(pixels[y, int(s.cx)]) == COLORS[s.color], (e.id, s)


def test_role_spans_cover_non_whitespace_exactly():
    for e in make_examples(SMALL, "test_ood"):
        covered = [None] * len(e.target)
        for start, end, role in e.role_spans:
            assert role in ("perception", "reasoning", "format")  # "noise" only with data.noise_words
            for i in range(start, end):
                assert covered[i] is None, (e.id, i)
                covered[i] = role
        for char, role in zip(e.target, covered):
            assert (role is None) == char.isspace(), e.target
        think_end = e.target.index(".")
        listing = [(e.target[s:t], r) for s, t, r in e.role_spans if 7 <= s < think_end]
        assert all(r == "perception" or (r == "format" and word in FILLER_WORDS) for word, r in listing)
        assert all(r != "perception" for s, _, r in e.role_spans if s > think_end)


def test_glue_words_precede_every_object_and_change_nothing_else():
    plain = make_examples(SMALL.model_copy(update={"filler_words": 0}), "train")
    glued = make_examples(SMALL.model_copy(update={"filler_words": 3}), "train")
    openers = set()
    for a, b in zip(plain, glued):
        assert (a.question, a.answer, a.shapes) == (b.question, b.answer, b.shapes)
        assert "i see" not in a.target
        listing = b.target[len("<think>") : b.target.index(".")].split()
        perceived = a.target[len("<think>") : a.target.index(".")].split()
        per_object = len(perceived) // len(a.shapes)  # exists lists colour and shape
        chunks = [listing[i : i + 3 + per_object] for i in range(0, len(listing), 3 + per_object)]
        assert [c[3:] for c in chunks] == [perceived[i : i + per_object] for i in range(0, len(perceived), per_object)]
        assert all(c[0] in FILLER_OPENERS and c[1:3] == ["i", "see"] for c in chunks)
        openers |= {c[0] for c in chunks}
        assert b.target.endswith(a.target[a.target.index(".") :])
        assert completion_role_spans(b.target) == [tuple(s) for s in b.role_spans]
    assert openers == set(FILLER_OPENERS)  # the opener is drawn, not fixed


def test_noise_words_open_the_thinking_at_random_and_change_nothing_else():
    plain = make_examples(SMALL, "train")
    noisy = make_examples(SMALL.model_copy(update={"noise_words": 4}), "train")
    drawn = []
    for a, b in zip(plain, noisy):
        assert (a.question, a.answer, a.shapes) == (b.question, b.answer, b.shapes)
        words = b.target[len("<think>") :].split()[:4]
        assert all(w in NOISE_WORDS for w in words) and b.target == "<think>" + " ".join(words) + " " + a.target[len("<think>") :]
        roles = [(b.target[s:e], r) for s, e, r in b.role_spans]
        assert roles[1:5] == [(w, "noise") for w in words] and "noise" not in {r for _, r in roles[5:]}
        assert completion_role_spans(b.target) == [tuple(s) for s in b.role_spans]
        drawn += words
    counts = np.bincount([NOISE_WORDS.index(w) for w in drawn], minlength=len(NOISE_WORDS))
    assert stats.chisquare(counts).pvalue > 1e-3  # uniform over the eight words
    # the label follows the word, wherever a sampled completion puts it inside the tags
    assert [r for *_, r in completion_role_spans("<think>red kilo. red 1 echo</think><answer>1</answer> lima")] == [
        "format", "perception", "noise", "format", "reasoning", "reasoning", "noise", "format", "format", "reasoning", "format"
    ]


def test_grounded_targets_box_each_counted_object_and_rethink_the_derivation():
    """GRIT's style (data.target_style: grounded): same scenes and answers; each object the question
    counts gets its bounding box right after it, so a counting target has as many boxes as its answer."""
    plain = make_examples(SMALL, "train")
    grounded = make_examples(SMALL.model_copy(update={"target_style": "grounded"}), "train")
    for a, b in zip(plain, grounded):
        assert (a.question, a.answer, a.shapes) == (b.question, b.answer, b.shapes)
        thinking, rethinking = b.target[len("<think>") :].split("</think><rethink>")
        boxes = [w for w in thinking.split() if w.startswith("[")]
        assert boxes == [box_text(s) for s in b.shapes if box_text(s) in boxes] and len(set(boxes)) == len(boxes)
        assert [w for w in thinking.split() if not w.startswith("[")] == a.target[len("<think>") : a.target.index(".")].split()
        assert rethinking == a.target[a.target.index(". ") + 2 :].replace("</think>", "</rethink>", 1)
        if b.family in ("count_color", "count_shape", "sum_digits"):
            assert len(boxes) == (len(b.shapes) if b.family == "sum_digits" else int(b.answer))
        assert completion_role_spans(b.target) == [tuple(s) for s in b.role_spans]
        roles = {b.target[s:e]: r for s, e, r in b.role_spans}
        assert all(roles[box] == "perception" for box in boxes) and roles["<rethink>"] == "format"
    shape = grounded[0].shapes[0]
    left, top, right, bottom = (int(v) for v in box_text(shape)[1:-1].split(","))
    assert abs((left + right) / 2 - shape.cx) <= 1 and abs(right - left - shape.size) <= 1


def test_token_roles_rules():
    spans = [(0, 7, "format"), (7, 10, "perception"), (11, 12, "reasoning")]
    # special token (empty offsets), " red"-like token starting on whitespace, uncovered token
    assert token_roles([(0, 0), (0, 7), (6, 10), (10, 12), (12, 14)], spans) == [
        "format", "format", "format", "reasoning", "format"
    ]
    assert token_roles([(7, 10), (10, 12)], spans) == ["perception", "reasoning"]


def train_bpe(texts: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tags = ["<think>", "</think>", "<answer>", "</answer>"]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in tags])
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def test_corpus_is_deterministic_text():
    texts = corpus(SMALL)
    assert texts == corpus(SMALL) and len(texts) == 2 * SMALL.n_train
    assert any(t.startswith("<think>") for t in texts) and any(t.endswith("?") for t in texts)


def test_token_roles_align_with_a_trained_bpe():
    tokenizer = train_bpe(corpus(SMALL))
    for e in make_examples(SMALL, "test_ood"):
        encoding = tokenizer.encode(e.target, add_special_tokens=False)
        roles = token_roles(encoding.offsets, e.role_spans)
        assert len(roles) == len(encoding.ids)
        char_role = {i: r for s, t, r in e.role_spans for i in range(s, t)}
        for (start, end), role in zip(encoding.offsets, roles):
            chars = {char_role[i] for i in range(start, end) if not e.target[i].isspace()}
            assert chars == ({role} if chars else set()), (e.target, e.target[start:end], chars, role)
            assert chars or role == "format"  # a whitespace-only token is format
        assert "".join(e.target[s:t] for s, t in encoding.offsets) == e.target
        by_role = {r: [e.target[s:t].strip() for (s, t), rr in zip(encoding.offsets, roles) if rr == r] for r in set(roles)}
        assert set("".join(by_role["perception"]).replace(" ", "")) <= set("".join(list(COLORS) + list(SHAPES)) + "123456789")
        assert {"<think>", "</think>", "<answer>", "</answer>"} <= set(by_role["format"])
