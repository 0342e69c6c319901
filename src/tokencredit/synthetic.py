"""Synthetic visual-reasoning task whose target tokens carry ground-truth roles.

Each image holds coloured shapes (circle, square, triangle; red, green, blue, yellow) on a plain
background. Shapes sit in distinct cells of a square grid (3x3 for up to 9 shapes), jittered
inside their cell: they never overlap, and the scan order of the chain of thought (row-major over
cells) is unambiguous. At 84x84 a cell is 28 px, one merged Qwen2-VL vision token. Images of the
`sum_digits` family also carry one digit (1-9) inside each shape.

The chain of thought names EVERY object, in scan order, by the attribute(s) the question needs
(a tiny model learns counting only when the listing is dense; see PLATFORM.md), then gives a
short derivation and the answer (shown here with `data.filler_words` 0):

    count_color  "How many red shapes are there?"        <think>red blue red. red 2</think><answer>2</answer>
    count_shape  "How many circles are there?"           <think>circle square circle. circle 2</think>...
    exists       "Is there a blue triangle?"             <think>red circle blue triangle. blue triangle 1</think><answer>yes</answer>
    compare      "Are there more red shapes than blue shapes?"  <think>red blue red. red 2 blue 1</think><answer>yes</answer>
    sum_digits   "What is the sum of the digits?"        <think>3 5 1. sum 9</think><answer>9</answer>

With `data.target_style: grounded` the targets follow GRIT's grounded reasoning (arXiv 2505.15879,
eric-ai-lab/GRIT: "think ... while output necessary coordinates ... rethink ... answer"): each object
the question counts is followed by its box [x1,y1,x2,y2] (pixels, the shape's bounding box), and the
derivation moves from after the "." into <rethink>, so a counting target has as many boxes as its answer:

    count_color  <think>red [5,6,24,25] blue red [61,4,79,22]</think><rethink>red 2</rethink><answer>2</answer>

With `data.filler_words` n > 0 every listed object is introduced by n words of linguistic glue,
the first drawn at random from FILLER_OPENERS, the others fixed (FILLER_GLUE): "<think>then i see
red now i see blue. red 1</think>...". Real rollouts are long and mostly text that neither reads the
image nor decides the answer (issue 24; docs/experiment.md): the glue makes perception a minority of
the tokens, and the random opener is a phrasing choice with entropy but no bearing on the reward.
The glue comes from its own random stream: scenes, questions and answers do not depend on n.

With `data.noise_words` n > 0 the chain of thought opens with n words drawn independently and uniformly
from NOISE_WORDS ("<think>kilo echo golf alpha red blue red. red 2</think>..."), role "noise": tokens
with entropy (log 8 nats each) whose identity nothing depends on, neither the scene nor the answer, and
whose number is fixed. Unlike the glue's openers, which also decide whether the listing goes on (design 3
of docs/experiment.md), they are reward-irrelevant by construction: under uniform credit each adds
gradient noise A · grad log pi(y) and nothing else, which the oracle `oracle_roles(noise_weight=0)`
removes (issue 24's positive control; at n = 4 it did not beat uniform, docs/experiment.md, design 4).
Their own random stream again.

With `data.claims_per_image` n > 0 every example also carries n claims about its scene, half true, in a
`claims` column (JSON [[claim, true or false], ...]): VAPO's visual claims, which its probes ask the
policy ("there is a red circle.", "there are 2 squares."; `scene_claims`), from their own random stream.

Role labelling rule (character spans over `target`, stored as JSON [start, end, role]):
- perception: each object word of the listing (before the "."), boxes included: it can only be read off the image.
- reasoning: each word of the derivation (after the ".", or in <rethink>) and the answer value: derived content.
- format: the tags <think>, </think>, <rethink>, </rethink>, <answer>, </answer>, the "." separator and the glue words.
- noise: the noise words (NOISE_WORDS), wherever they stand inside the tags.
Whitespace belongs to no span. A token takes the role of the first span it overlaps, i.e. the span
of its first non-whitespace character; a token that overlaps no span is format (`token_roles`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from tokencredit.atomic import atomic_path, write_parquet
from tokencredit.claim_probes import probe_corpus
from tokencredit.params import DataParams

SPLITS = ("train", "validation", "test", "test_ood")
COLORS = {"red": (220, 50, 50), "green": (50, 180, 70), "blue": (60, 100, 235), "yellow": (235, 205, 40)}
COLOR_NAMES = tuple(COLORS)
SHAPES = ("circle", "square", "triangle")
ROLES = ("perception", "reasoning", "format", "noise")
BACKGROUND = (64, 64, 64)
DIGIT_INK = (0, 0, 0)
FILLER_OPENERS = ("then", "next", "also", "now")
FILLER_GLUE = ("i", "see")
FILLER_WORDS = frozenset(FILLER_OPENERS + FILLER_GLUE)
NOISE_WORDS = ("alpha", "bravo", "delta", "echo", "golf", "hotel", "kilo", "lima")
COLUMNS = ("id", "split", "family", "question", "image", "answer", "answer_type", "target", "role_spans", "n_objects")

# 3x5 bitmap glyphs of the digits 1-9: drawn pixel by pixel, so images never depend on a font file.
DIGIT_GLYPHS = {
    1: ("010", "110", "010", "010", "111"),
    2: ("111", "001", "111", "100", "111"),
    3: ("111", "001", "011", "001", "111"),
    4: ("101", "101", "111", "001", "001"),
    5: ("111", "100", "111", "001", "111"),
    6: ("111", "100", "111", "101", "111"),
    7: ("111", "001", "010", "010", "010"),
    8: ("111", "101", "111", "101", "111"),
    9: ("111", "101", "111", "001", "111"),
}


@dataclass(frozen=True)
class Shape:
    color: str
    shape: str
    cell: int  # row-major index in the grid: the scan order of the chain of thought
    size: float  # side of the shape's bounding box, in pixels
    cx: float
    cy: float
    digit: int | None


@dataclass(frozen=True)
class Example:
    id: str
    split: str
    family: str
    question: str
    answer: str
    answer_type: str
    target: str
    role_spans: list[tuple[int, int, str]]
    shapes: list[Shape]
    claims: list[tuple[str, bool]]


class _Target:
    """Builds the target text and its role spans piece by piece."""

    def __init__(self) -> None:
        self.text = ""
        self.spans: list[tuple[int, int, str]] = []

    def add(self, text: str, role: str | None = None) -> None:
        if role is not None:
            self.spans.append((len(self.text), len(self.text) + len(text), role))
        self.text += text

    def words(self, words: list[str], role: str) -> None:
        self.tagged([(word, role) for word in words])

    def tagged(self, words: list[tuple[str, str]]) -> None:
        """Words separated by single spaces, each with its own role."""
        for i, (word, role) in enumerate(words):
            if i:
                self.add(" ")
            self.add(word, role)

    def listing(self, objects: list[list[str]], filler: list[list[str]]) -> None:
        """Each object's words (perception), after its glue words (format)."""
        self.tagged([pair for glue, words in zip(filler, objects) for pair in [(w, "format") for w in glue] + [(w, "perception") for w in words]])


def filler_phrases(rng: np.random.Generator, n_objects: int, filler_words: int) -> list[list[str]]:
    """The glue before each of `n_objects` listed objects: a random opener, then the fixed glue words."""
    if filler_words == 0:
        return [[] for _ in range(n_objects)]
    return [[FILLER_OPENERS[rng.integers(len(FILLER_OPENERS))], *FILLER_GLUE[: filler_words - 1]] for _ in range(n_objects)]


def noise_phrase(rng: np.random.Generator, noise_words: int) -> list[str]:
    """`noise_words` words drawn independently and uniformly from NOISE_WORDS."""
    return [NOISE_WORDS[i] for i in rng.integers(len(NOISE_WORDS), size=noise_words)]


def grid_side(params: DataParams) -> int:
    """Cells per side: at least 3, enough for the largest scene of any split."""
    return max(3, math.ceil(math.sqrt(max(params.max_objects, params.ood_max_objects))))


def _scene(rng: np.random.Generator, n: int, grid: int, image_size: int, with_digits: bool) -> list[Shape]:
    cell = image_size / grid
    cells = np.sort(rng.choice(grid * grid, size=n, replace=False))
    shapes = []
    for c in cells:
        # Shapes that carry a digit are larger, so the digit fits inside even a triangle.
        size = cell * (rng.uniform(0.7, 0.85) if with_digits else rng.uniform(0.55, 0.8))
        slack = (cell - size) / 2
        cx = (c % grid + 0.5) * cell + rng.uniform(-slack, slack)
        cy = (c // grid + 0.5) * cell + rng.uniform(-slack, slack)
        shapes.append(
            Shape(
                color=COLOR_NAMES[rng.integers(len(COLOR_NAMES))],
                shape=SHAPES[rng.integers(len(SHAPES))],
                cell=int(c),
                size=float(size),
                cx=float(cx),
                cy=float(cy),
                digit=int(rng.integers(1, 10)) if with_digits else None,
            )
        )
    return shapes


def box_text(shape: Shape) -> str:
    """A shape's bounding box as GRIT's models write one, x1,y1,x2,y2 in pixels: "[5,6,24,25]"."""
    h = shape.size / 2
    return "[" + ",".join(str(round(v)) for v in (shape.cx - h, shape.cy - h, shape.cx + h, shape.cy + h)) + "]"


def _question(
    rng: np.random.Generator, family: str, shapes: list[Shape], filler: list[list[str]], noise: list[str], style: str
) -> tuple[str, str, str, _Target]:
    """Question, answer, answer type and target of one family on one scene, `noise` words opening the
    chain of thought, `filler` glue before each object, in `style` (data.target_style: plain, or grounded
    with boxes and <rethink>)."""
    t = _Target()
    t.add("<think>", "format")
    if noise:
        t.words(noise, "noise")
        t.add(" ")
    colors = [s.color for s in shapes]
    if family == "count_color":
        color = COLOR_NAMES[rng.integers(len(COLOR_NAMES))]
        question, answer, answer_type = f"How many {color} shapes are there?", str(colors.count(color)), "integer"
        listed, counted = [[c] for c in colors], [c == color for c in colors]
        derivation = [color, answer]
    elif family == "count_shape":
        shape = SHAPES[rng.integers(len(SHAPES))]
        kinds = [s.shape for s in shapes]
        question, answer, answer_type = f"How many {shape}s are there?", str(kinds.count(shape)), "integer"
        listed, counted = [[k] for k in kinds], [k == shape for k in kinds]
        derivation = [shape, answer]
    elif family == "exists":
        present = sorted({(s.color, s.shape) for s in shapes})
        absent = [(c, k) for c in COLOR_NAMES for k in SHAPES if (c, k) not in present]
        # Half the questions name a present object, so yes and no are balanced.
        pool = present if (rng.random() < 0.5 or not absent) else absent
        color, shape = pool[rng.integers(len(pool))]
        count = sum(s.color == color and s.shape == shape for s in shapes)
        question, answer, answer_type = f"Is there a {color} {shape}?", "yes" if count else "no", "yes_no"
        listed, counted = [[s.color, s.shape] for s in shapes], [s.color == color and s.shape == shape for s in shapes]
        derivation = [color, shape, str(count)]
    elif family == "compare":
        a, b = rng.choice(len(COLOR_NAMES), size=2, replace=False)
        first, second = COLOR_NAMES[a], COLOR_NAMES[b]
        n_first, n_second = colors.count(first), colors.count(second)
        question = f"Are there more {first} shapes than {second} shapes?"
        answer, answer_type = "yes" if n_first > n_second else "no", "yes_no"
        listed, counted = [[c] for c in colors], [c in (first, second) for c in colors]
        derivation = [first, str(n_first), second, str(n_second)]
    elif family == "sum_digits":
        digits = [s.digit for s in shapes]
        answer = str(sum(digits))
        question, answer_type = "What is the sum of the digits?", "integer"
        listed, counted = [[str(d)] for d in digits], [True] * len(shapes)
        derivation = ["sum", answer]
    else:
        raise ValueError(f"unknown question family {family!r} (known: count_color, count_shape, exists, compare, sum_digits)")
    if style == "grounded":
        t.listing([words + [box_text(s)] if c else words for words, s, c in zip(listed, shapes, counted)], filler)
        t.add("</think>", "format")
        t.add("<rethink>", "format")
        t.words(derivation, "reasoning")
        t.add("</rethink>", "format")
    else:
        t.listing(listed, filler)
        t.add(".", "format")
        t.add(" ")
        t.words(derivation, "reasoning")
        t.add("</think>", "format")
    t.add("<answer>", "format")
    t.add(answer, "reasoning")
    t.add("</answer>", "format")
    return question, answer, answer_type, t


def scene_claims(rng: np.random.Generator, shapes: list[Shape], n: int) -> list[tuple[str, bool]]:
    """`n` claims about the scene, half of them true, in random order: VAPO's visual claims (20 per image,
    half true, about the image and not the question; their dataset's were written by GPT-5). The pools
    hold 20 true and 20 false claims on every scene: each colour-shape pair present or absent, and the
    number of shapes of each colour, of each kind and in all (a wrong number is the true one ± 1)."""
    present = {(s.color, s.shape) for s in shapes}
    true, false = [], []
    for color in COLOR_NAMES:
        for shape in SHAPES:
            there, not_there = f"there is a {color} {shape}", f"there is no {color} {shape}"
            true.append(there if (color, shape) in present else not_there)
            false.append(not_there if (color, shape) in present else there)
    counts = [(f"{c} shapes", sum(s.color == c for s in shapes)) for c in COLOR_NAMES]
    counts += [(f"{k}s", sum(s.shape == k for s in shapes)) for k in SHAPES] + [("shapes", len(shapes))]
    for what, count in counts:
        wrong = count + 1 if count == 0 or rng.random() < 0.5 else count - 1
        true.append(f"there are {count} {what}")
        false.append(f"there are {wrong} {what}")
    half = n // 2
    claims = [(true[i] + ".", True) for i in rng.choice(len(true), half, replace=False)]
    claims += [(false[i] + ".", False) for i in rng.choice(len(false), half, replace=False)]
    return [claims[i] for i in rng.permutation(len(claims))]


def object_range(params: DataParams, split: str) -> tuple[int, int]:
    if split == "test_ood":
        return params.ood_min_objects, params.ood_max_objects
    return params.min_objects, params.max_objects


def split_size(params: DataParams, split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    return getattr(params, f"n_{split}")


def make_examples(params: DataParams, split: str) -> list[Example]:
    """All examples of one split (scenes and texts, no pixels); deterministic from params.seed."""
    n = split_size(params, split)
    rng = np.random.default_rng([params.seed, SPLITS.index(split)])
    lo, hi = object_range(params, split)
    glue_rng = np.random.default_rng([params.seed, SPLITS.index(split), 1])  # its own stream: scenes do not depend on the glue
    claim_rng = np.random.default_rng([params.seed, SPLITS.index(split), 2])  # and none on the claims
    noise_rng = np.random.default_rng([params.seed, SPLITS.index(split), 3])  # nor on the noise words
    grid = grid_side(params)
    examples = []
    for i in range(n):
        family = params.families[i % len(params.families)]  # round-robin keeps families balanced
        shapes = _scene(rng, int(rng.integers(lo, hi + 1)), grid, params.image_size, family == "sum_digits")
        filler = filler_phrases(glue_rng, len(shapes), params.filler_words)
        noise = noise_phrase(noise_rng, params.noise_words)
        question, answer, answer_type, target = _question(rng, family, shapes, filler, noise, params.target_style)
        claims = scene_claims(claim_rng, shapes, params.claims_per_image) if params.claims_per_image else []
        examples.append(
            Example(f"{split}-{i:06d}", split, family, question, answer, answer_type, target.text, target.spans, shapes, claims)
        )
    return examples


def render(shapes: list[Shape], image_size: int) -> Image.Image:
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for s in shapes:
        h = s.size / 2
        box = (s.cx - h, s.cy - h, s.cx + h, s.cy + h)
        fill = COLORS[s.color]
        if s.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif s.shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(s.cx, s.cy - h), (s.cx + h, s.cy + h), (s.cx - h, s.cy + h)], fill=fill)
        if s.digit is not None:
            # A triangle's widest inner area is below its centre: put the digit at the centroid.
            _draw_digit(draw, s.digit, s.cx, s.cy + (s.size / 6 if s.shape == "triangle" else 0), s.size)
    return image


def _draw_digit(draw: ImageDraw.ImageDraw, digit: int, cx: float, cy: float, size: float) -> None:
    scale = max(1, round(size / 10))
    x0, y0 = round(cx - 1.5 * scale), round(cy - 2.5 * scale)
    for row, bits in enumerate(DIGIT_GLYPHS[digit]):
        for col, bit in enumerate(bits):
            if bit == "1":
                x, y = x0 + col * scale, y0 + row * scale
                draw.rectangle((x, y, x + scale - 1, y + scale - 1), fill=DIGIT_INK)


def image_relpath(split: str, example_id: str) -> str:
    return f"images/{split}/{example_id}.png"


def _frame(examples: list[Example], with_claims: bool) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "id": [e.id for e in examples],
            "split": [e.split for e in examples],
            "family": [e.family for e in examples],
            "question": [e.question for e in examples],
            "image": [image_relpath(e.split, e.id) for e in examples],
            "answer": [e.answer for e in examples],
            "answer_type": [e.answer_type for e in examples],
            "target": [e.target for e in examples],
            "role_spans": [json.dumps([list(s) for s in e.role_spans]) for e in examples],
            "n_objects": pd.Series([len(e.shapes) for e in examples], dtype="int64"),
        },
        columns=list(COLUMNS),
    )
    if with_claims:  # only then: the default task's files stay byte-identical
        frame["claims"] = [json.dumps([list(c) for c in e.claims]) for e in examples]
    return frame


def write_splits(params: DataParams, data_dir: Path) -> None:
    """Write data_dir/{split}.parquet and data_dir/images/{split}/{id}.png for every split.

    Images of a split are written to a temporary directory renamed into place before the
    parquet, so an existing parquet always points at a complete image directory.
    """
    data_dir = Path(data_dir)
    for split in SPLITS:
        examples = make_examples(params, split)
        with atomic_path(data_dir / "images" / split, directory=True) as tmp:
            for e in examples:
                render(e.shapes, params.image_size).save(tmp / f"{e.id}.png", format="PNG")
        write_parquet(data_dir / f"{split}.parquet", _frame(examples, params.claims_per_image > 0))


def corpus(params: DataParams) -> list[str]:
    """Questions and targets of the train split, and its claim probes when it has claims: the text a tokenizer is trained on."""
    examples = make_examples(params, "train")
    return [text for e in examples for text in (e.question, e.target)] + probe_corpus([e.claims for e in examples])


def token_roles(offsets: list[tuple[int, int]], role_spans: list[tuple[int, int, str]]) -> list[str]:
    """Role of each token, from its (start, end) character offsets over the target.

    A token takes the role of the first span it overlaps (spans exclude whitespace, so this is
    the span of its first non-whitespace character); a token overlapping none, or an empty
    offset such as a special token's (0, 0), is "format".
    """
    spans = sorted((int(s), int(e), str(r)) for s, e, r in role_spans)
    roles = []
    for start, end in offsets:
        role = "format"
        if end > start:
            for s, e, r in spans:
                if s < end and e > start:
                    role = r
                    break
        roles.append(role)
    return roles


# Pieces of a completion, in the order the labelling rule tries them: a tag, the "." separator,
# whitespace, a word (anything up to whitespace, "." or a tag), or a stray "<".
_PIECE = re.compile(r"(?P<tag></?(?:think|rethink|answer)>)|(?P<dot>\.)|(?P<space>\s+)|(?P<word>[^\s.<]+|<)")


def completion_role_spans(text: str) -> list[tuple[int, int, str]]:
    """Role spans of ANY completion text (e.g. a sampled one), by the rule that labels the targets.

    Tags and the first "." inside <think> are format; words inside <think> before that "." are
    perception (the object listing, boxes included) unless they are glue words (FILLER_WORDS: format),
    words after it and inside <rethink> (grounded targets) or <answer> are reasoning; a noise word
    (NOISE_WORDS) is noise wherever it stands inside the tags. Words
    outside both tags, and any later ".", get no span (format for `token_roles`), as do
    whitespace. On a generated target this returns exactly its `role_spans`.
    """
    spans: list[tuple[int, int, str]] = []
    region = None  # None (outside tags), "listing", "derivation" or "answer"
    for piece in _PIECE.finditer(text):
        start, end = piece.span()
        if piece["tag"]:
            spans.append((start, end, "format"))
            region = {"<think>": "listing", "<rethink>": "derivation", "<answer>": "answer"}.get(piece["tag"])
        elif piece["dot"] and region == "listing":
            spans.append((start, end, "format"))
            region = "derivation"
        elif piece["word"] in NOISE_WORDS and region is not None:
            spans.append((start, end, "noise"))
        elif piece["word"] and region is not None:
            perceived = region == "listing" and piece["word"] not in FILLER_WORDS
            spans.append((start, end, "perception" if perceived else "format" if region == "listing" else "reasoning"))
    return spans
