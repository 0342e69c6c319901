"""The one schema every dataset adapter converts to, and the errors of a conversion.

A converted split is a parquet file with COLUMNS: `question` is the user text (prompt template
applied), `images` the relative paths of its images (`image` the first, "" when none), `choices`
the option texts of a multiple-choice item (letters A, B, ... in order), `metadata` a JSON object
of the published fields worth keeping, `source` the adapter and `family` its per-item group
(subject, problem version, category...) for per-family accuracies, `answer_format` the marker the
prompt asks the answer in (prompt.answer_format: boxed or tags), which rewards and grading read.
An adapter may write EXTRA_COLUMNS besides: `claims`, VAPO's visual claims of the row's image (JSON
[[claim, true or false], ...], as the synthetic task writes them), which its claim probes ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ANSWER_TYPES = ("integer", "number", "expression", "multiple_choice", "yes_no", "free_form")
COLUMNS = ("id", "split", "source", "family", "question", "image", "images", "answer", "answer_type", "choices", "metadata", "answer_format")
EXTRA_COLUMNS = ("claims",)


@dataclass(frozen=True)
class Item:
    """One published row as an adapter reads it; images are still the published values."""

    id: str
    question: str
    answer: str
    answer_type: str
    images: tuple[Any, ...] = ()  # {bytes, path} structs (Hugging Face Image), raw bytes, or paths in the release
    choices: tuple[str, ...] = ()
    family: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    claims: tuple[tuple[str, bool], ...] = ()  # VAPO's visual claims and whether each is true (adapters with a `claims` column)


class BadRow(ValueError):
    """A published row that cannot be converted: missing field, broken image, unknown answer type..."""


class BrokenInRelease(BadRow):
    """A row the release itself publishes broken (an empty question or answer): it cannot be asked
    or graded whatever the adapter does, so it is always skipped, and counted with its reason."""


class SourceError(ValueError):
    """A dataset that cannot be converted; the message names the file, the row and the field."""
