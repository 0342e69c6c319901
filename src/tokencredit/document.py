"""The report as data: one list of sections, rendered to Markdown and to HTML by one jinja2 template each.

A section is a heading and its blocks, in order: a paragraph (a str; `backticks` mark code), a
Table, an Image or the token Viewer. Sections marked html_only (the token analysis, the viewer)
are left out of the Markdown, whose images are files beside it; the HTML embeds them.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jinja2
from markupsafe import Markup, escape

Cell = str | list[str]  # a list of str: one line each


@dataclass
class Table:
    kind: ClassVar[str] = "table"
    header: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class Image:
    kind: ClassVar[str] = "image"
    alt: str
    png: bytes
    file: str | None = None  # the PNG's name beside summary.md; None: HTML only


@dataclass
class Viewer:
    """The token viewer (HTML only): data of tokencredit.report_html.viewer_data."""

    kind: ClassVar[str] = "viewer"
    data: dict[str, Any]
    role_colors: dict[str, str]  # underline colour of each ground-truth role


Block = str | Table | Image | Viewer


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2
    anchor: str | None = None  # HTML id; with `nav`, linked from the page's top
    nav: str | None = None
    html_only: bool = False


def _code_spans(text: str) -> Markup:
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _html_lines(cell: Cell) -> Markup:
    return escape(cell) if isinstance(cell, str) else Markup("<br>").join(escape(line) for line in cell)


def _md_cell(cell: Cell) -> str:
    lines = [cell] if isinstance(cell, str) else cell
    return "<br>".join(line.replace("|", "\\|") for line in lines)


def _numeric(cell: Cell) -> bool:
    """Numbers align right, text left."""
    return isinstance(cell, str) and re.match(r"^[-+–]?[\d.]", cell) is not None


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tokencredit", "templates"),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(code_spans=_code_spans, html_lines=_html_lines, md_cell=_md_cell, b64=lambda b: base64.b64encode(b).decode())
    env.tests["numeric"] = _numeric
    # tojson escapes <, >, & and ' (no string closes the <script>); keep the data's key order.
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "separators": (",", ":"), "allow_nan": False}
    return env


def render_markdown(sections: list[Section]) -> str:
    return _environment(False).get_template("report.md.j2").render(sections=sections).rstrip("\n") + "\n"


def render_html(title: str, sections: list[Section]) -> str:
    return _environment(True).get_template("report.html.j2").render(title=title, sections=sections)
