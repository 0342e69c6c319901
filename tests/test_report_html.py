"""index.html: self-contained page with the summary, the token analysis and the token viewer;
rendered and driven in real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_analysis import fake_scores
from test_report import TEST, fake_eval, run_dirs, write_eval

from tokencredit.params import AnalysisParams
from tokencredit.document import Image, Section, Table, Viewer, render_html, render_markdown
from tokencredit.report import build_report
from tokencredit.report_html import ROLE_COLORS, viewer_data

POLICIES = ("sft", "grpo-uniform-s0", "grpo-uniform-s1")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    evals = [write_eval(root, fake_eval(p, "test", *TEST[p])) for p in POLICIES]
    scores = root / "scores.parquet"
    fake_scores(policies=POLICIES, families=("count_color", "exists")).to_parquet(scores)
    out = root / "report"
    build_report(evals, run_dirs(root, POLICIES), out, [scores], AnalysisParams(n_bootstrap=20, viewer_responses=3))
    return out


def test_index_is_one_self_contained_page(report_dir: Path):
    page = (report_dir / "index.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "<link" not in page  # nothing fetched
    for anchor in ("roles", "auroc", "precision", "selection", "overlap", "shift", "accuracy", "viewer"):
        assert f'id="{anchor}"' in page
    assert "<h1>tokencredit report</h1>" in page and "<td>grpo-uniform</td>" in page  # summary.md, rendered
    assert "role-perception" in page and "role-noise" not in page  # the viewer's legend: the roles the scores have
    assert page.count("data:image/png;base64,") >= 3  # AUROC, Jaccard and concentration plots
    assert "AUROC for perception tokens" in page and "per question family" in page
    viewer = json.loads(re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', page, re.S)[1])
    assert list(viewer["policies"]) == list(POLICIES)
    analysis = json.loads((report_dir / "analysis.json").read_text())
    assert {r["policy"] for r in analysis["auroc"]} == set(POLICIES)


def test_markdown_and_html_from_the_same_sections():
    sections = [
        Section("Title", ["Some `code` & text."], level=1),
        Section("Numbers", [Table(["a", "b|c"], [["x", "<2>"], ["1.5", ["one", "two"]]], "cap"), Image("curve", b"\x89PNG", "c.png")]),
        Section("Only on the page", ["analysis"], anchor="only", nav="only here", html_only=True),
        Section("Plot", [Image("inline", b"\x89PNG")]),
    ]
    md = render_markdown(sections)
    assert md.startswith("# Title\n\nSome `code` & text.\n\n## Numbers\n")
    assert "| a | b\\|c |\n|---|---|\n| x | <2> |\n| 1.5 | one<br>two |\n" in md and "**cap**" in md
    assert "![curve](c.png)" in md and "Only on the page" not in md and "inline" not in md
    page = render_html("report", sections)
    assert "<h1>Title</h1>" in page and "<p>Some <code>code</code> &amp; text.</p>" in page
    assert "<th>a</th><th>b|c</th>" in page and "<td>&lt;2&gt;</td>" in page and "|---|" not in page
    assert '<td class="num">1.5</td><td>one<br>two</td>' in page and "<caption>cap</caption>" in page
    assert page.count('src="data:image/png;base64,iVBORw=="') == 2
    assert '<h2 id="only">Only on the page</h2>' in page and '<nav><a href="#only">only here</a> </nav>' in page


def test_viewer_shows_the_same_prompts_for_every_policy():
    data = viewer_data(fake_scores(policies=POLICIES), n_responses=2, seed=0)
    shown = {policy: [(r["id"], r["sample"]) for r in responses] for policy, responses in data["policies"].items()}
    assert len(shown["sft"]) == 2 and all(pairs == shown["sft"] for pairs in shown.values())
    assert all(sample == 0 for _, sample in shown["sft"])
    first = data["policies"]["sft"][0]["tokens"][0]
    assert len(first) == 2 + len(data["columns"]) and data["roles"][first[1]] == "format"


def test_token_text_cannot_close_the_script():
    viewer = {"columns": ["signal.entropy"], "roles": ["format"], "policies": {"sft": [{"tokens": [["</script><b>x", 0, 1.0]]}]}}
    page = render_html("r", [Section("viewer", [Viewer(viewer, ROLE_COLORS)])])
    assert "</script><b>x" not in page and page.count("</script>") == 2


# -- real browser ------------------------------------------------------------------------------------


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: install Debian's `chromium` package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def browse(url: str, profile: Path, *flags: str) -> str:
    cmd = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *flags, url,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


class ViewerDom(HTMLParser):
    """What the test reads back from a dumped DOM: tables, the viewer's status and its token spans."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables, self.status, self.tokens = 0, {}, []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tables += tag == "table"
        if a.get("id") == "viewer-status":
            self.status = a
        if tag == "span" and "data-value" in a:
            self.tokens.append((a["data-value"], a.get("style", ""), a.get("class", ""), a.get("title", "")))


def test_index_in_headless_chromium(report_dir: Path, tmp_path: Path):
    index = (report_dir / "index.html").resolve()
    entropy = ViewerDom(browse(f"{index.as_uri()}#policy=sft&signal=signal.entropy", tmp_path / "p1", "--dump-dom"))
    assert entropy.tables > 10
    assert entropy.status["data-signal"] == "signal.entropy" and entropy.status["data-policy"] == "sft"
    assert len(entropy.tokens) == 3 * 7  # 3 responses of 7 tokens
    assert all("background-color: rgb(" in style for _, style, _, _ in entropy.tokens)
    assert {cls for _, _, cls, _ in entropy.tokens} == {"tok role-format", "tok role-perception", "tok role-reasoning"}
    assert "role: perception" in entropy.tokens[1][3] and "weight.atrl = 1.500" in entropy.tokens[1][3]
    assert len({style for _, style, _, _ in entropy.tokens}) > 3  # coloured by value

    uniform = ViewerDom(browse(f"{index.as_uri()}#policy=grpo-uniform-s1&signal=weight.uniform", tmp_path / "p2", "--dump-dom"))
    assert uniform.status["data-signal"] == "weight.uniform" and uniform.status["data-policy"] == "grpo-uniform-s1"
    assert {value for value, _, _, _ in uniform.tokens} == {"1"} and len({style for _, style, _, _ in uniform.tokens}) == 1

    # Choosing in the <select> goes through the URL fragment and re-renders.
    driven = tmp_path / "driven.html"
    script = (
        "<script>window.addEventListener('load', () => { const s = document.getElementById('viewer-signal');"
        " s.value = 'signal.vis_absdiff.drop_image'; s.dispatchEvent(new Event('change')); });</script>"
    )
    driven.write_text((report_dir / "index.html").read_text().replace("</body>", script + "</body>"))
    chosen = ViewerDom(browse(f"{driven.as_uri()}#policy=sft&signal=weight.uniform", tmp_path / "p3", "--dump-dom"))
    assert chosen.status["data-signal"] == "signal.vis_absdiff.drop_image"
    assert [v for v, _, _, _ in chosen.tokens] != [v for v, _, _, _ in uniform.tokens]

    screenshot = tmp_path / "viewer.png"
    browse(f"{index.as_uri()}#policy=sft&signal=signal.entropy", tmp_path / "p4", f"--screenshot={screenshot}", "--window-size=1280,2400")
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000


def test_without_scores_the_page_has_the_summary_only(tmp_path):
    evals = [write_eval(tmp_path, fake_eval("sft", "test", *TEST["sft"]))]
    build_report(evals, [], tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<h1>tokencredit report</h1>" in page and "viewer-data" not in page
    assert json.loads((tmp_path / "out" / "analysis.json").read_text()) == {}
