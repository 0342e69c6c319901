"""Dataset adapters on small files the tests write in each release's published format."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from tokencredit.params import BenchmarkSpec, DataParams, ParamsError, PromptParams, deep_merge, merged_params, validate
from tokencredit.sources import check_sources, get_adapter, registered
from tokencredit.sources.answers import infer_answer_type, option_letters, unbox
from tokencredit.sources.benchmark import load_benchmark, write_benchmark
from tokencredit.sources.convert import convert
from tokencredit.sources.questions import choices_in_text
from tokencredit.sources.records import lookup, read_rows
from tokencredit.sources.schema import ANSWER_TYPES, COLUMNS, BadRow, SourceError
from tokencredit.sources.training import write_training_splits

ROOT = Path(__file__).resolve().parents[1]
PROMPT = PromptParams(template="{question} Put the final answer in \\boxed{}.", answer_format="boxed")


# Published files, as each release lays them out.


def png(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def embedded(name: str = "x.png") -> dict:
    """Hugging Face's Image feature as parquet stores it."""
    return {"bytes": png(), "path": name}


def write_parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def write_png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png())


# Each builder writes a small copy of one release in its published layout, from the source cited.


def geometry3k(root: Path) -> None:
    # hiyouga/geometry3k card: data/{train,validation,test}-*.parquet; `images` a list of Image, `problem`, `answer`.
    for split, n in (("train", 6), ("validation", 2), ("test", 3)):
        rows = [{"images": [embedded()], "problem": f"<image>Find x. ({i})", "answer": str(i + 2)} for i in range(n)]
        write_parquet(root / f"data/{split}-00000-of-00001.parquet", rows)


def virl39k(root: Path) -> None:
    # TIGER-Lab/ViRL39K card: 39Krelease.parquet + images.zip unzipped to images/; `image` a list of paths.
    rows = []
    for i in range(5):
        write_png(root / f"images/q{i}-0.png")
        answer = "\\boxed{B}" if i == 0 else f"\\boxed{{{i}}}"
        question = "<image>Which? Choices:\n(A) 1\n(B) 2" if i == 0 else f"<image>How many? ({i})"
        rows.append({"qid": f"q{i}", "question": question, "answer": answer, "image": [f"images/q{i}-0.png"],
                     "category": "math", "source": "MMK12", "PassRate_7BTrained": 0.5, "PassRate_32BTrained": 0.75})
    write_parquet(root / "39Krelease.parquet", rows)


def mmk12(root: Path) -> None:
    # FanqingM/MMK12 card: data/{train,test}-*.parquet; `id`, `subject`, `image` (Image), `question`, `answer`.
    for split in ("train", "test"):
        rows = [
            {"id": f"{split}-0", "question": "What is 2+2?", "answer": "4", "subject": "math", "image": embedded()},
            {"id": f"{split}-1", "question": "Which gas? A. O2 B. N2 C. CO2 D. H2", "answer": "C", "subject": "chemistry", "image": embedded()},
        ]
        write_parquet(root / f"data/{split}-00000-of-00001.parquet", rows)


def mathvista(root: Path) -> None:
    # AI4Math/MathVista card: data/{testmini,test}-*.parquet; `image` a string path, `decoded_image` an
    # Image, `choices` a list or null, `precision` float64 (null unless the answer is a float), `metadata` a struct.
    write_png(root / "images/2.png")
    base = {"unit": None, "precision": None, "metadata": {"category": "math-targeted-vqa", "task": "geometry problem solving", "skills": ["algebraic reasoning"]}}
    rows = [
        {**base, "pid": "1", "question": "What is the angle?", "image": "images/1.png", "decoded_image": embedded("images/1.png"),
         "choices": ["30°", "60°", "90°"], "answer": "60°", "question_type": "multi_choice", "answer_type": "text",
         "query": "Hint: answer with a letter.\nQuestion: What is the angle?\nChoices:\n(A) 30°\n(B) 60°\n(C) 90°"},
        {**base, "pid": "2", "question": "What is y?", "image": "images/2.png", "decoded_image": None, "choices": None,
         "answer": "1.5", "question_type": "free_form", "answer_type": "float", "precision": 1.0, "query": "Question: What is y?"},
    ]
    write_parquet(root / "data/testmini-00000-of-00001.parquet", rows)


def mathverse(root: Path) -> None:
    # AI4Math/MathVerse Hub snapshot: testmini.parquet (`image` an Image), testmini_text_only.parquet (its
    # `image` a string, ""), and the same rows as testmini.json + images.zip, which must not be read too.
    versions = ("Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only")
    rows = [
        {"sample_index": str(i + 1), "problem_index": "1", "problem_version": version,
         "question": "" if version == "Vision Only" else "Find the angle.\nChoices:\nA:30°\nB:60°\nC:90°\nD:120°",
         "image": embedded(), "answer": "B", "question_type": "multi-choice",
         "metadata": {"split": "testmini", "source": "GeoQA", "subject": "plane geometry", "subfield": "angle"},
         "query_wo": "According to the question shown in the image, answer with the option letter.", "query_cot": "..."}
        for i, version in enumerate(versions)
    ]
    rows.append({**rows[0], "sample_index": "6", "problem_index": "2", "question": "Find the length x.", "answer": "2\\sqrt{3}", "question_type": "free-form"})
    # Multi-choice rows whose answer is not a letter: an option's text, and a value with no options listed.
    rows.append({**rows[0], "sample_index": "7", "problem_index": "3", "answer": "90°"})
    rows.append({**rows[0], "sample_index": "8", "problem_index": "4", "question": "Which value is x?", "answer": "\\frac{1}{2}"})
    write_parquet(root / "testmini.parquet", rows)
    write_parquet(root / "testmini_text_only.parquet", [{**rows[0], "problem_version": "Text Only", "image": ""}])
    (root / "testmini.json").write_text(json.dumps([{**r, "image": f"images/{r['sample_index']}.png"} for r in rows]))


def mathvision(root: Path) -> None:
    # MathLLMs/MathVision card: data/{test,testmini}-*.parquet; `options` a list, `image` a string, `decoded_image` an Image.
    write_png(root / "images/1.png")
    rows = [
        {"id": "1", "question": "<image1>Which figure is next?", "options": ["A", "B", "C", "D", "E"], "image": "images/1.png",
         "decoded_image": None, "answer": "C", "solution": None, "level": 2, "subject": "logic"},
        {"id": "2", "question": "<image1>How long is the side?", "options": [], "image": "images/1.png",
         "decoded_image": embedded("images/1.png"), "answer": "12", "solution": "...", "level": 3, "subject": "metric geometry - length"},
    ]
    write_parquet(root / "data/test-00000-of-00001.parquet", rows)


def wemath_rows() -> list[dict]:
    """One two-step problem as We-Math/We-Math's testmini.json lists it: its three rows share `ID`."""
    base = {"ID": "2steps_1", "split": "testmini", "knowledge concept": "Circumference of Circles", "question number": 1,
            "option": "A. 1 cm;B. 1.5 cm;C. 3.14 cm;D. 6.28 cm; E. No correct answer", "knowledge concept description": "..."}
    return [{**base, "key": f"2steps_{part}", "question": f"Part {part}: the radius is ( ) cm.", "answer": "A",
             "image_path": f"2steps/image/1-{part}.png"} for part in ("1", "2", "multi")]


def wemath(root: Path) -> None:
    # Hub snapshot of We-Math/We-Math: data/testmini-00000-of-00001-adbfe22dcd3558e6.parquet (`image_path`
    # an Image) beside testmini.json (the same rows, `image_path` a path into testmini.zip); lmms-eval's
    # wemath task reads the parquet file (doc["image_path"].convert("RGB")).
    rows = wemath_rows()
    write_parquet(root / "data/testmini-00000-of-00001-adbfe22dcd3558e6.parquet", [{**r, "image_path": embedded(r["image_path"])} for r in rows])
    (root / "testmini.json").write_text(json.dumps(rows))


def wemath_github(root: Path) -> None:
    # The GitHub release (We-Math/We-Math, data/): testmini.json with `image_path` a file under the folder.
    for row in wemath_rows():
        write_png(root / row["image_path"])
    (root / "testmini.json").write_text(json.dumps(wemath_rows()))


def dynamath(root: Path) -> None:
    # DynaMath/DynaMath_Sample card: split sample_variant{n} is data/sample{n}-*.parquet; `id` is the seed
    # question (the same in every variant), `image` a string, `decoded_image` an Image.
    for variant in (1, 2):
        rows = [
            {"id": "1", "question": "Which is true? (A) f is odd (B) f is even", "image": f"images/1-{variant}.png", "decoded_image": embedded(),
             "ground_truth": "B", "answer_type": "multiple choice", "subject": "analytic geometry", "knowledge_level": "high school"},
            {"id": "2", "question": "What is f(2)?", "image": f"images/2-{variant}.png", "decoded_image": embedded(),
             "ground_truth": f"{variant + 2.5}", "answer_type": "float", "subject": "algebra", "knowledge_level": "high school"},
        ]
        write_parquet(root / f"data/sample{variant}-00000-of-00001.parquet", rows)


def logicvista(root: Path) -> None:
    # The GitHub release (Yijia-Xiao/LogicVista): data/dataset.json, an object keyed by id, images in
    # data/images/; list-typed skill and capability fields; row v1_382 is published empty.
    rows = {
        "v1_0": {"imagename": "v1_0.png", "question": "Which choices (A-D) belong to the green category?", "answer": "A, C",
                 "reasoning": "...", "skill": ["inductive"], "broad_capability": ["diagram"], "specific_capability": ["sequence pattern"]},
        "v1_1": {"imagename": "v1_1.png", "question": "How many triangles? Select from A-D. \n A) 10 B) 12 C) 14 D) 16", "answer": "C",
                 "reasoning": "...", "skill": ["numerical"], "broad_capability": ["diagram"], "specific_capability": ["counting"]},
        "v1_382": {"imagename": "v1_382.png", "question": "", "answer": "", "reasoning": "", "skill": ["spatial"],
                   "broad_capability": ["diagram"], "specific_capability": ["3d pattern"]},
    }
    for row in rows.values():
        write_png(root / "data/images" / row["imagename"])
    (root / "data/dataset.json").write_text(json.dumps(rows))


def logicvista_hub(root: Path) -> None:
    # lscpku/LogicVista, split test (what lmms-eval's logicvista task reads): data/test-*.parquet with
    # `id`, `image` (an Image), `question`, `answer`, `reasoning`, `skill`, `broad_capability`, ...
    rows = [{"id": "v1_0", "image": embedded(), "question": "What choice (A, B, C, or D) fits the pattern?", "answer": "C",
             "reasoning": "...", "skill": "inductive", "broad_capability": "diagram", "specific_capability": "sequence pattern",
             "imagesource": "aptitudetests", "sourcelink": "https://example.org", "liscenced": "false"}]
    write_parquet(root / "data/test-00000-of-00001.parquet", rows)


def hallusionbench(root: Path) -> None:
    # lmms-lab/HallusionBench card: data/image-*.parquet (951 rows) and data/non_image-*.parquet (178, `image` null).
    def row(category, figure, question, gt, visual="1"):
        return {"category": category, "subcategory": "chart", "visual_input": visual, "set_id": "0", "figure_id": figure,
                "sample_note": "", "question_id": question, "question": f"Is it {question}?", "gt_answer_details": "",
                "gt_answer": gt, "filename": f"./VD/chart/0_{figure}.png", "image": embedded() if visual != "0" else None}

    write_parquet(root / "data/image-00000-of-00001.parquet", [row("VD", "0", "0", "1"), row("VD", "1", "0", "0", "2")])
    write_parquet(root / "data/non_image-00000-of-00001.parquet", [row("VS", "0", "0", "1", "0")])


def mmmu_pro_vision(root: Path) -> None:
    # MMMU/MMMU_Pro card, config vision: vision/test-*.parquet; `options` a string (a Python list's repr).
    rows = [{"id": "test_1", "image": embedded(), "options": "['12 V', '24 V', '36 V']", "answer": "B", "subject": "Physics"}]
    write_parquet(root / "vision/test-00000-of-00004.parquet", rows)


# The instruction PAPO-Eval and VPPO-Eval append to every question (awesome-perception-aware-rlvr
# tests/test_eval_loaders.py: PAPO_SUFFIX, "\n\n" in PAPO-Eval, "\n" in VPPO-Eval).
PAPERS_INSTRUCTION = ("You first think through the reasoning process as an internal monologue, enclosed within "
                      "<think> </think> tags. Then, provide your final answer enclosed within \\boxed{}.")


def sharegpt_row(question: str, answer: str, images: list[str], sep: str = "\n\n") -> dict:
    return {"messages": [{"content": f"<image>{question}{sep}{PAPERS_INSTRUCTION}", "role": "user"},
                         {"content": answer, "role": "assistant"}], "images": images}


def papo_eval(root: Path) -> None:
    # PAPO-Galaxy/PAPO_eval (the fork's eval/prepare/papo_eval.py): data/<split>-00000-of-00001.parquet with
    # `messages`, `images` ("./data/images/<folder>/<file>.png") and `id`; <split>_images.zip unzipped into
    # data/images/. PAPO-Eval's prepare_data.py writes the same rows, `id` deleted, as data/papo/<split>.json.
    split = "BUAADreamer_clevr_count_70k"
    rows = []
    for i, answer in enumerate(("4", "7")):
        image = f"./data/images/{split}/{split}_{i}_0.png"
        write_png(root / image)
        rows.append({**sharegpt_row("How many objects are there?", answer, [image]), "id": f"{split}_{i}"})
    write_parquet(root / f"data/{split}-00000-of-00001.parquet", rows)
    (root / f"data/papo/{split}.json").parent.mkdir(parents=True)
    (root / f"data/papo/{split}.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "id"} for r in rows]))
    logic = "lscpku_LogicVista"
    write_png(root / f"data/images/{logic}/{logic}_0_0.png")
    (root / f"data/papo/{logic}.json").write_text(json.dumps([sharegpt_row(
        "Which shape comes next?\nA. circle\nB. square\nC. star\nD. cross", "C", [f"./data/images/{logic}/{logic}_0_0.png"])]))


def vppo_eval(root: Path) -> None:
    # chamber111/VPPO-Eval (the fork's eval/prepare/vppo_eval.py): data/vppo/<name>.json, ShareGPT rows with
    # no id, the instruction after a single newline; loose images under data/images/<name>/.
    name = "DynaMath_DynaMath_Sample"
    for i in range(2):
        write_png(root / f"data/images/{name}/{i}.png")
    rows = [sharegpt_row("What is the range of f?", "12", [f"./data/images/{name}/0.png"], sep="\n"),
            sharegpt_row("Is f odd? (A) yes (B) no", "B", [f"./data/images/{name}/1.png"], sep="\n")]
    (root / "data/vppo").mkdir(parents=True)
    (root / f"data/vppo/{name}.json").write_text(json.dumps(rows))


def pope(root: Path) -> None:
    # lmms-lab/POPE card (read by lmms-eval's pope tasks and the fork's eval/prepare/lmms_lab.py): config Full,
    # Full/{random,popular,adversarial}-00000-of-00001.parquet; config default, the same rows in
    # data/test-0000{0,1,2}-of-00003.parquet (a snapshot holds both: read once). Fields id, question_id,
    # question, answer ("yes"/"no"), image_source, image (Image), category; question_id restarts per subset.
    rows = {subset: [{"id": str(3 * k + j), "question_id": str(j + 1), "question": f"Is there a {thing} in the image?", "answer": answer,
                      "image_source": "COCO_val2014_000000310196", "image": embedded(), "category": subset}
                     for j, (thing, answer) in enumerate((("snowboard", "yes"), ("dining table", "no")))]
            for k, subset in enumerate(("adversarial", "popular", "random"))}
    for subset, subset_rows in rows.items():
        write_parquet(root / f"Full/{subset}-00000-of-00001.parquet", subset_rows)
    write_parquet(root / "data/test-00000-of-00003.parquet", [r for subset_rows in rows.values() for r in subset_rows])


def papo_train(root: Path, name: str = "virl39k") -> None:
    # PAPOGalaxy/PAPO_ViRL39K_train and PAPO_MMK12_test (EasyR1's layout, merged unchanged by the fork's
    # scripts/data/prepare_train_data.py): data/train-*.parquet, `images` a list of Image, `problem`, `answer`;
    # the MMK12 test set is published as the split "train".
    rows = [{"images": [embedded()], "problem": f"<image>How many? ({i})", "answer": str(i + 1)} for i in range(3)]
    rows[2] = {**rows[2], "problem": "<image>Which gas? A. O2 B. N2 C. CO2", "answer": "C"}
    write_parquet(root / "data/train-00000-of-00001.parquet", rows)


def vapo_thinker(root: Path) -> None:
    # xytian1008/VAPO-Thinker-train36k: PAPO's ViRL39K rows (EasyR1's layout, as papo_train) with claim_1..claim_20 and
    # label_1..label_20 ("CORRECT"/"WRONG"), the fields VAPO's generate_anchors reads (vllm_rollout_spmd.py @ 67687cf);
    # data/train-*.parquet as the Hub lays out a parquet dataset (assumed: the card was not at hand).
    claims = {f"claim_{j}": f"The figure shows {j} lines." for j in range(1, 21)}
    labels = {f"label_{j}": "CORRECT" if j % 2 else "WRONG" for j in range(1, 21)}
    rows = [{"images": [embedded()], "problem": f"<image>How many lines? ({i})", "answer": str(i + 1), **claims, **labels} for i in range(2)]
    write_parquet(root / "data/train-00000-of-00001.parquet", rows)


def virl39k_claims(root: Path) -> None:
    # The awesome-perception-aware-rlvr fork's virl39k_claims/train.parquet (examples/comparison/qwen3_vl_4b/vapo.sh):
    # PAPO's ViRL39K rows with `visual_claims`, "a JSON list of {"claim", "correct"}; [] for rows without claims"
    # (its docs/algorithm_parameters.md, "Visual-Claim Probes"): the multi-image problems have none.
    claims = json.dumps([{"claim": "The triangle is red.", "correct": True}, {"claim": "There are 4 circles.", "correct": False}])
    rows = [{"images": [embedded()], "problem": "<image>Find x.", "answer": "3", "visual_claims": claims},
            {"images": [embedded("a.png"), embedded("b.png")], "problem": "<image><image>Which differs?", "answer": "B", "visual_claims": "[]"}]
    write_parquet(root / "train.parquet", rows)


# adapter -> (builder, split, rows kept, rows the release publishes broken)
FIXTURES = {
    "geometry3k": (geometry3k, "test", 3, 0), "virl39k": (virl39k, "train", 5, 0), "mmk12": (mmk12, "test", 2, 0),
    "mathvista": (mathvista, "testmini", 2, 0), "mathverse": (mathverse, "testmini", 8, 0), "mathvision": (mathvision, "test", 2, 0),
    "wemath": (wemath, "testmini", 3, 0), "dynamath": (dynamath, "all", 4, 0), "logicvista": (logicvista, "test", 2, 1),
    "hallusionbench": (hallusionbench, "all", 3, 0), "mmmu_pro_vision": (mmmu_pro_vision, "test", 1, 0),
    "papo_eval": (papo_eval, "BUAADreamer_clevr_count_70k", 2, 0), "vppo_eval": (vppo_eval, "DynaMath_DynaMath_Sample", 2, 0),
    "pope": (pope, "test", 6, 0), "papo_virl39k": (papo_train, "train", 3, 0), "papo_mmk12": (papo_train, "test", 3, 0),
    "vapo_thinker": (vapo_thinker, "train", 2, 0), "virl39k_claims": (virl39k_claims, "train", 2, 0),
}  # fmt: skip


def converted(name: str, root: Path, **kwargs) -> tuple[pd.DataFrame, int]:
    make, split, _, _ = FIXTURES[name]
    make(root)
    return convert(get_adapter(name), root, kwargs.pop("split", split), root.parent / "out" / name, f"images/{name}", **kwargs)


def by_id(frame: pd.DataFrame) -> dict[str, dict]:
    return {row["id"]: row for row in frame.to_dict("records")}


# Every adapter on its fixture.


def test_every_adapter_has_a_fixture():
    assert sorted(FIXTURES) == registered()


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_adapter_converts_its_published_format(name, tmp_path):
    frame, skipped = converted(name, tmp_path / "release", template="{question} Box it.")  # default on_bad_row
    assert (len(frame), len(skipped)) == FIXTURES[name][2:]
    assert list(frame.columns) == [*COLUMNS, *get_adapter(name).columns]
    assert frame["id"].is_unique and set(frame["source"]) == {name}
    assert set(frame["answer_type"]) <= set(ANSWER_TYPES)
    assert all(q.endswith(" Box it.") and "<image" not in q for q in frame["question"])
    for row in frame.to_dict("records"):
        assert row["image"] == (row["images"][0] if row["images"] else "")
        for rel in row["images"]:
            with Image.open(tmp_path / "out" / name / Path(rel).name) as image:
                assert image.size == (8, 8)
        json.loads(row["metadata"])
        if row["answer_type"] == "multiple_choice":
            assert option_letters(row["answer"]) is not None


def test_mathvista_answers_by_letter_and_keeps_free_form_types(tmp_path):
    rows = by_id(converted("mathvista", tmp_path / "r")[0])
    assert (rows["1"]["answer"], rows["1"]["answer_type"], rows["1"]["choices"]) == ("B", "multiple_choice", ["30°", "60°", "90°"])
    assert rows["1"]["family"] == "geometry problem solving" and "(B) 60°" in rows["1"]["question"]
    assert (rows["2"]["answer"], rows["2"]["answer_type"]) == ("1.5", "number")
    assert rows["2"]["images"] == ["images/mathvista/000001-0.png"]  # the path form, read from the release
    assert json.loads(rows["2"]["metadata"])["precision"] == 1.0


def test_mathverse_versions_and_the_vision_only_subset(tmp_path):
    frame = converted("mathverse", tmp_path / "r")[0]
    rows = by_id(frame)
    assert rows["1"]["choices"] == ["30°", "60°", "90°", "120°"] and rows["1"]["family"] == "Text Dominant"
    assert rows["6"]["answer_type"] == "expression"
    assert rows["5"]["question"].startswith("According to the question shown in the image")
    vision_only, _ = convert(get_adapter("mathverse"), tmp_path / "r", "testmini", tmp_path / "vo", "images/vo", where={"problem_version": ["Vision Only"]})
    assert list(vision_only["id"]) == ["5"]
    subset, _ = convert(get_adapter("mathverse"), tmp_path / "r", "testmini", tmp_path / "mc", "images/mc", where={"metadata.source": ["GeoQA"]}, limit=2)
    assert list(subset["id"]) == ["1", "2"]


def test_mathverse_answers_that_are_not_letters_and_the_text_only_split(tmp_path):
    rows = by_id(converted("mathverse", tmp_path / "r")[0])
    assert (rows["7"]["answer"], rows["7"]["answer_type"]) == ("C", "multiple_choice")  # the option's text, as its letter
    assert (rows["8"]["answer"], rows["8"]["answer_type"]) == ("\\frac{1}{2}", "expression")  # a value: graded as one
    text_only, skipped = convert(get_adapter("mathverse"), tmp_path / "r", "testmini_text_only", tmp_path / "t", "images/t")
    assert skipped == [] and text_only["images"].tolist() == [[]] and text_only["image"].tolist() == [""]


def test_option_lists_are_read_from_each_release(tmp_path):
    mmmu = by_id(converted("mmmu_pro_vision", tmp_path / "m")[0])
    assert mmmu["test_1"]["choices"] == ["12 V", "24 V", "36 V"]
    logic = by_id(converted("logicvista", tmp_path / "l")[0])
    assert (logic["v1_0"]["answer"], logic["v1_0"]["answer_type"], logic["v1_0"]["family"]) == ("A, C", "multiple_choice", "inductive")
    assert logic["v1_1"]["choices"] == ["10", "12", "14", "16"]
    dyna = by_id(converted("dynamath", tmp_path / "d")[0])
    assert dyna["1-v1"]["choices"] == ["f is odd", "f is even"] and dyna["2-v2"]["answer_type"] == "number"


def test_wemath_sub_questions_share_an_id_and_one_layout_is_read(tmp_path):
    frame, skipped = converted("wemath", tmp_path / "hub")  # the Hub snapshot: parquet and JSON, only the parquet is read
    assert skipped == [] and frame["id"].tolist() == ["2steps_1-1", "2steps_1-2", "2steps_1-multi"]
    assert frame["choices"][0] == ["1 cm", "1.5 cm", "3.14 cm", "6.28 cm", "No correct answer"] and set(frame["family"]) == {"2steps"}
    assert [json.loads(m)["key"] for m in frame["metadata"]] == ["2steps_1", "2steps_2", "2steps_multi"]
    wemath_github(tmp_path / "github")
    github, _ = convert(get_adapter("wemath"), tmp_path / "github", "testmini", tmp_path / "o", "images/o")
    assert github["id"].tolist() == frame["id"].tolist()


def test_logicvista_release_row_is_skipped_with_its_reason_and_the_hub_copy_loads(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        frame, skipped = converted("logicvista", tmp_path / "github")  # the default on_bad_row: error
    assert frame["id"].tolist() == ["v1_0", "v1_1"]
    assert skipped == [f"{tmp_path / 'github/data/dataset.json'} row 2: empty question"] and "row 2" in caplog.text
    logicvista_hub(tmp_path / "hub")
    hub, _ = convert(get_adapter("logicvista"), tmp_path / "hub", "test", tmp_path / "o", "images/o")
    assert (hub["id"][0], hub["answer"][0], hub["family"][0], len(hub["images"][0])) == ("v1_0", "C", "inductive", 1)


def test_dynamath_variants_one_by_one_or_all_together(tmp_path):
    frame = converted("dynamath", tmp_path / "r")[0]
    assert frame["id"].tolist() == ["1-v1", "2-v1", "1-v2", "2-v2"]
    metadata = [json.loads(m) for m in frame["metadata"]]
    assert [(m["seed"], m["variant"]) for m in metadata] == [("1", 1), ("2", 1), ("1", 2), ("2", 2)]
    assert "tolerance" not in metadata[0] and metadata[1]["tolerance"] == 0.001  # float answers: the official tolerance
    second, _ = convert(get_adapter("dynamath"), tmp_path / "r", "sample_variant2", tmp_path / "v2", "images/v2")
    assert second["id"].tolist() == ["1-v2", "2-v2"] and second["answer"].tolist() == ["B", "4.5"]


def test_a_folder_of_no_known_layout_names_the_folder_and_the_patterns(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(SourceError, match=r"elsewhere matches no known layout .*\['data/test-\*\.parquet'\] or \['data/dataset\.json'\]"):
        convert(get_adapter("logicvista"), tmp_path / "elsewhere", "test", tmp_path / "o", "images/x")


def test_papo_eval_copies_keep_the_bare_question_and_answer(tmp_path):
    frame, _ = converted("papo_eval", tmp_path / "r", template="{question} Box it.")
    rows = by_id(frame)
    assert list(rows) == ["BUAADreamer_clevr_count_70k_0", "BUAADreamer_clevr_count_70k_1"]
    first = rows["BUAADreamer_clevr_count_70k_0"]
    assert first["question"] == "How many objects are there? Box it."  # the papers' instruction and <image> removed
    assert (first["answer"], first["answer_type"], first["family"]) == ("4", "integer", "BUAADreamer_clevr_count_70k")
    # PAPO-Eval's own download script writes JSON without ids: read when no parquet is there, ids by position
    logic, _ = convert(get_adapter("papo_eval"), tmp_path / "r", "lscpku_LogicVista", tmp_path / "lv", "images/lv")
    row = logic.to_dict("records")[0]
    assert row["id"] == "lscpku_LogicVista_0" and row["answer_type"] == "multiple_choice"
    assert list(row["choices"]) == ["circle", "square", "star", "cross"]
    (tmp_path / "r/data/BUAADreamer_clevr_count_70k-00000-of-00001.parquet").unlink()
    from_json, _ = convert(get_adapter("papo_eval"), tmp_path / "r", "BUAADreamer_clevr_count_70k", tmp_path / "j", "images/j")
    assert list(from_json["id"]) == ["BUAADreamer_clevr_count_70k_0", "BUAADreamer_clevr_count_70k_1"]
    assert list(from_json["question"]) == ["How many objects are there?"] * 2


def test_vppo_eval_files_are_read_by_position(tmp_path):
    frame, _ = converted("vppo_eval", tmp_path / "r")
    assert list(frame["id"]) == ["DynaMath_DynaMath_Sample_0", "DynaMath_DynaMath_Sample_1"]
    assert list(frame["question"]) == ["What is the range of f?", "Is f odd? (A) yes (B) no"]  # after a single newline too
    assert list(frame["answer_type"]) == ["integer", "multiple_choice"] and list(frame["choices"][1]) == ["yes", "no"]
    bad = json.loads((tmp_path / "r/data/vppo/DynaMath_DynaMath_Sample.json").read_text())
    bad[1]["messages"] = bad[1]["messages"][:1]
    (tmp_path / "r/data/vppo/DynaMath_DynaMath_Sample.json").write_text(json.dumps(bad))
    with pytest.raises(SourceError, match=r"DynaMath_DynaMath_Sample.json row 1 .*'messages' has no assistant turn"):
        convert(get_adapter("vppo_eval"), tmp_path / "r", "DynaMath_DynaMath_Sample", tmp_path / "o", "images/o")


def test_pope_subsets_are_read_once(tmp_path):
    frame, _ = converted("pope", tmp_path / "r")  # config Full, not again from config default
    assert sorted(frame["id"]) == sorted(f"{s}-{q}" for s in ("adversarial", "popular", "random") for q in (1, 2))
    assert set(frame["answer_type"]) == {"yes_no"} and set(frame["family"]) == {"adversarial", "popular", "random"}
    assert json.loads(frame["metadata"][0]) == {"category": "adversarial", "image_source": "COCO_val2014_000000310196", "label": "yes"}
    popular, _ = convert(get_adapter("pope"), tmp_path / "r", "popular", tmp_path / "p", "images/p")
    assert list(popular["id"]) == ["popular-1", "popular-2"]
    for path in (tmp_path / "r/Full").iterdir():
        path.unlink()
    default, _ = convert(get_adapter("pope"), tmp_path / "r", "test", tmp_path / "d", "images/d")
    assert len(default) == 6  # the default config's files when there is no Full folder


def test_hallusionbench_answers_and_figures(tmp_path):
    rows = by_id(converted("hallusionbench", tmp_path / "h")[0])
    assert {k: r["answer"] for k, r in rows.items()} == {"VD_chart_0_0_0": "yes", "VD_chart_0_1_0": "no", "VS_chart_0_0_0": "yes"}
    assert rows["VS_chart_0_0_0"]["images"] == [] and rows["VS_chart_0_0_0"]["image"] == ""
    assert json.loads(rows["VD_chart_0_1_0"]["metadata"])["figure_id"] == "1"


def test_training_sets_unbox_answers_and_infer_types(tmp_path):
    rows = by_id(converted("virl39k", tmp_path / "v")[0])
    assert (rows["q0"]["answer"], rows["q0"]["answer_type"], rows["q0"]["choices"]) == ("B", "multiple_choice", ["1", "2"])
    assert (rows["q1"]["answer"], rows["q1"]["answer_type"], rows["q1"]["family"]) == ("1", "integer", "math")
    geo = converted("geometry3k", tmp_path / "g")[0]
    assert geo["id"].tolist() == ["test-00000", "test-00001", "test-00002"]
    assert geo["question"].tolist()[0] == "Find x. (0)"


def test_vapo_thinker_claims_keep_their_labels_and_vapo_needs_them(tmp_path):
    frame = converted("vapo_thinker", tmp_path / "v")[0]
    claims = json.loads(frame["claims"].iloc[0])
    assert claims[:2] == [["The figure shows 1 lines.", True], ["The figure shows 2 lines.", False]] and len(claims) == 20
    write_parquet(tmp_path / "bad/data/train-0.parquet", [{**next(read_rows(next((tmp_path / "v/data").glob("*.parquet")))), "label_3": "TRUE"}])
    with pytest.raises(SourceError, match="label_3 is 'TRUE', not CORRECT or WRONG"):
        convert(get_adapter("vapo_thinker"), tmp_path / "bad", "train", tmp_path / "out", "images")
    real = {"data": {"source": "papo_virl39k", "path": str(tmp_path)}, "model": {"path": str(tmp_path)}, "train": {"methods": ["vapo"]},
            "eval": {"splits": [], "benchmarks": ["mv"]}, "benchmarks": {"mv": {"source": "mathvista", "path": str(tmp_path)}}}
    with pytest.raises(ValueError, match=r"methods.vapo \(reward 'vapo'\) reads the column\(s\) \['claims'\].*'papo_virl39k'.*\['vapo_thinker', 'virl39k_claims'\]"):
        check_sources(validate(real))
    check_sources(validate(deep_merge(real, {"data": {"source": "vapo_thinker"}})))
    fork = converted("virl39k_claims", tmp_path / "f")[0]
    assert [json.loads(c) for c in fork["claims"]] == [[["The triangle is red.", True], ["There are 4 circles.", False]], []]
    write_parquet(tmp_path / "bad2/train.parquet", [{"images": [embedded()], "problem": "<image>?", "answer": "1", "visual_claims": '[{"claim": "x"}]'}])
    with pytest.raises(SourceError, match="visual_claims is not a JSON list of \\{claim, correct\\} objects"):
        convert(get_adapter("virl39k_claims"), tmp_path / "bad2", "train", tmp_path / "out2", "images")


# Malformed rows: an error naming file, row and field, or a counted, logged skip.


def test_missing_field_names_file_row_and_field(tmp_path):
    root = tmp_path / "mmk12"
    mmk12(root)
    path = root / "data/test-00000-of-00001.parquet"
    rows = pq.read_table(path).to_pylist()
    write_parquet(path, [{k: v for k, v in row.items() if k != "answer"} for row in rows])
    with pytest.raises(SourceError, match=r"test-00000-of-00001\.parquet row 0 \(mmk12/test\): missing field 'answer'"):
        convert(get_adapter("mmk12"), root, "test", tmp_path / "o", "images/x")
    write_parquet(path, [rows[0], {**rows[1], "answer": None}])
    with pytest.raises(SourceError, match=r"row 1 \(mmk12/test\): field 'answer' is empty"):
        convert(get_adapter("mmk12"), root, "test", tmp_path / "o", "images/x")
    json_root = tmp_path / "wemath"
    wemath_github(json_root)
    record = json.loads((json_root / "testmini.json").read_text())[0]
    (json_root / "testmini.json").write_text(json.dumps([record, {k: v for k, v in record.items() if k != "option"} | {"ID": "2"}]))
    with pytest.raises(SourceError, match=r"testmini\.json row 1 \(wemath/testmini\): missing field 'option'"):
        convert(get_adapter("wemath"), json_root, "testmini", tmp_path / "o", "images/x")
    (json_root / "testmini.json").write_text(json.dumps([record, "not a row"]))
    frame, skipped = convert(get_adapter("wemath"), json_root, "testmini", tmp_path / "o", "images/x", on_bad_row="skip")
    assert (len(frame), len(skipped)) == (1, 1)


def test_jsonl_rows_and_their_errors(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"a": {"b": 2}}\n')
    rows = list(read_rows(path))
    assert rows == [{"a": 1}, {"a": {"b": 2}}] and lookup(rows[1], "a.b") == 2
    with pytest.raises(BadRow, match="missing field 'a.c'"):
        lookup(rows[1], "a.c")
    path.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(SourceError, match=r"rows\.jsonl line 2 is not valid JSON"):
        list(read_rows(path))


def test_bad_rows_are_skipped_counted_and_logged_when_asked(tmp_path, caplog):
    root = tmp_path / "r"
    root.mkdir()
    rows = [
        {"category": "VD", "subcategory": "map", "visual_input": "1", "set_id": "0", "figure_id": "0", "question_id": "0",
         "question": "Is it?", "gt_answer": "1", "image": embedded()},
        {"category": "VD", "subcategory": "map", "visual_input": "1", "set_id": "0", "figure_id": "1", "question_id": "0",
         "question": "Is it?", "gt_answer": "1", "image": {"bytes": b"not an image", "path": "x.png"}},
        {"category": "VD", "subcategory": "map", "visual_input": "1", "set_id": "0", "figure_id": "2", "question_id": "0",
         "question": "Is it?", "gt_answer": "maybe", "image": embedded()},
    ]
    write_parquet(root / "data/image-00000-of-00001.parquet", rows)
    with pytest.raises(SourceError, match=r"image-00000-of-00001\.parquet row 1 .*image does not decode"):
        convert(get_adapter("hallusionbench"), root, "image", tmp_path / "a", "images/x")
    with caplog.at_level(logging.WARNING):
        frame, skipped = convert(get_adapter("hallusionbench"), root, "image", tmp_path / "b", "images/x", on_bad_row="skip")
    assert len(skipped) == 2 and frame["id"].tolist() == ["VD_map_0_0_0"]
    assert "row 1" in caplog.text and "row 2" in caplog.text and "gt_answer 'maybe'" in caplog.text


def test_unknown_answer_type_and_bad_answers_are_bad_rows(tmp_path):
    root = tmp_path / "r"
    mathvista(root)
    path = root / "data/testmini-00000-of-00001.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[0]["answer"] = "45°"  # not one of its choices
    rows[1]["answer_type"] = "complex"
    write_parquet(path, rows)
    with pytest.raises(SourceError, match=r"row 0 .*'45°' is not one of its choices"):
        convert(get_adapter("mathvista"), root, "testmini", tmp_path / "o", "images/x")
    with pytest.raises(SourceError, match=r"row 1 .*unknown answer_type 'complex'"):
        convert(get_adapter("mathvista"), root, "testmini", tmp_path / "o", "images/x", where={"pid": ["2"]})


def test_missing_image_file_duplicate_ids_and_empty_results(tmp_path):
    root = tmp_path / "r"
    virl39k(root)
    (root / "images/q3-0.png").unlink()
    with pytest.raises(SourceError, match=r"row 3 .*image file .*q3-0\.png does not exist"):
        convert(get_adapter("virl39k"), root, "train", tmp_path / "o", "images/x")
    table = pq.read_table(root / "39Krelease.parquet").to_pylist()
    write_parquet(root / "39Krelease.parquet", [table[0], table[0]])
    with pytest.raises(SourceError, match=r"row 1 .*id 'q0' repeats that of .*row 0"):
        convert(get_adapter("virl39k"), root, "train", tmp_path / "o", "images/x")
    with pytest.raises(SourceError, match="no rows left"):
        convert(get_adapter("virl39k"), root, "train", tmp_path / "o", "images/x", where={"category": ["biology"]})
    with pytest.raises(SourceError, match=r"no file matching \['data/test-\*\.parquet'\]"):
        convert(get_adapter("mathvision"), tmp_path / "nothing", "test", tmp_path / "o", "images/x")


def test_unreadable_files_name_the_file(tmp_path):
    root = tmp_path / "r"
    (root / "data").mkdir(parents=True)
    (root / "data/dataset.json").write_text("{not json")
    with pytest.raises(SourceError, match=r"dataset\.json is not valid JSON"):
        convert(get_adapter("logicvista"), root, "test", tmp_path / "o", "images/x")
    (root / "vision").mkdir()
    (root / "vision/test-00000-of-00001.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(SourceError, match=r"test-00000-of-00001\.parquet is not a readable parquet file"):
        convert(get_adapter("mmmu_pro_vision"), root, "test", tmp_path / "o", "images/x")


# Training splits and benchmarks on disk.


def test_training_set_with_its_own_validation_split(tmp_path):
    geometry3k(tmp_path / "geo")
    data = DataParams(source="geometry3k", path=str(tmp_path / "geo"), limit=4)
    assert write_training_splits(data, PROMPT, tmp_path / "data") == []
    train, validation = (pd.read_parquet(tmp_path / f"data/{s}.parquet") for s in ("train", "validation"))
    assert (len(train), len(validation)) == (4, 2)
    assert set(train["split"]) == {"train"} and set(validation["split"]) == {"validation"}
    assert validation["image"].str.startswith("images/validation/").all()
    assert all((tmp_path / "data" / rel).is_file() for rel in [*train["image"], *validation["image"]])
    assert train["question"][0] == "Find x. (0) Put the final answer in \\boxed{}."
    assert set(train["answer_format"]) == set(validation["answer_format"]) == {"boxed"}  # what rewards read


def test_training_set_without_validation_holds_rows_out(tmp_path):
    virl39k(tmp_path / "virl")
    data = DataParams(source="virl39k", path=str(tmp_path / "virl"), n_validation=2, seed=3)
    write_training_splits(data, PROMPT, tmp_path / "data")
    train, validation = (pd.read_parquet(tmp_path / f"data/{s}.parquet") for s in ("train", "validation"))
    assert (len(train), len(validation)) == (3, 2)
    assert sorted([*train["id"], *validation["id"]]) == [f"q{i}" for i in range(5)]
    assert validation["image"].str.startswith("images/train/").all()  # held-out rows keep their images
    too_many = DataParams(source="virl39k", path=str(tmp_path / "virl"), n_validation=5)
    with pytest.raises(SourceError, match="cannot hold out n_validation=5 rows from a train split of 5"):
        write_training_splits(too_many, PROMPT, tmp_path / "data2")


def test_validation_split_from_another_release(tmp_path):
    """The fork's recipe: PAPO's ViRL39K, every row trained on, and MMK12 test as the validation split."""
    papo_train(tmp_path / "virl")
    papo_train(tmp_path / "mmk12")
    data = DataParams(source="papo_virl39k", path=str(tmp_path / "virl"),
                      validation=BenchmarkSpec(source="papo_mmk12", path=str(tmp_path / "mmk12")))  # fmt: skip
    assert write_training_splits(data, PROMPT, tmp_path / "data") == []
    train, validation = (pd.read_parquet(tmp_path / f"data/{s}.parquet") for s in ("train", "validation"))
    assert (len(train), len(validation)) == (3, 3)  # nothing held out
    assert list(validation["id"]) == ["test-00000", "test-00001", "test-00002"] and validation["image"].str.startswith("images/validation/").all()
    assert list(train["answer_type"]) == ["integer", "integer", "multiple_choice"]


def test_benchmark_round_trip_and_its_checks(tmp_path):
    mathvista(tmp_path / "mv")
    spec = BenchmarkSpec(source="mathvista", path=str(tmp_path / "mv"))
    assert write_benchmark("mathvista", spec, PROMPT, tmp_path / "bench") == []
    frame = load_benchmark(tmp_path / "bench", "mathvista")
    assert set(frame["split"]) == {"mathvista"} and frame["choices"][0] == ["30°", "60°", "90°"]
    assert set(frame["answer_format"]) == {"boxed"}  # what grading reads
    assert frame.attrs["skipped_rows"] == []
    logicvista(tmp_path / "lv")  # its release has a broken row: the converted copy keeps its reason for the report
    write_benchmark("lv", BenchmarkSpec(source="logicvista", path=str(tmp_path / "lv")), PROMPT, tmp_path / "bench")
    assert load_benchmark(tmp_path / "bench", "lv").attrs["skipped_rows"] == [f"{tmp_path / 'lv/data/dataset.json'} row 2: empty question"]
    assert frame["images"][1] == ["images/mathvista/000001-0.png"]
    (tmp_path / "bench/images/mathvista/000001-0.png").unlink()
    with pytest.raises(ValueError, match=r"image .*000001-0\.png of row id '2' does not exist"):
        load_benchmark(tmp_path / "bench", "mathvista")
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        load_benchmark(tmp_path / "bench", "nope")


# Params.


def test_data_and_benchmark_params_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="'/nowhere/ViRL39K' of dataset 'virl39k' does not exist"):
        DataParams(source="virl39k", path="/nowhere/ViRL39K")
    with pytest.raises(ValueError, match="needs `path`"):
        DataParams(source="virl39k")
    with pytest.raises(ValueError, match="data.source: unknown dataset adapter 'virl40k'"):
        real = {"data": {"source": "virl40k", "path": str(tmp_path)}, "model": {"path": str(tmp_path)}}
        benchmarks = {"eval": {"splits": [], "benchmarks": ["mv"]}, "benchmarks": {"mv": {"source": "mathvista", "path": str(tmp_path)}}}
        check_sources(validate(real | benchmarks))
    with pytest.raises(ValueError, match="source 'synthetic' reads no files"):
        DataParams(path=str(tmp_path))
    with pytest.raises(ValueError, match="benchmarks.mv.source: dataset adapter 'mathvista' has no published split 'testmax'"):
        check_sources(validate({"benchmarks": {"mv": {"source": "mathvista", "path": str(tmp_path), "split": "testmax"}}}))
    with pytest.raises(ValueError, match="exactly once"):
        PromptParams(template="no placeholder")
    with pytest.raises(ParamsError, match="eval.benchmarks names \\['mv'\\]"):
        validate({"eval": {"benchmarks": ["mv"]}})
    with pytest.raises(ParamsError, match="must not name a data split"):
        validate({"benchmarks": {"test": {"source": "mathvista", "path": str(tmp_path)}}})
    with pytest.raises(ParamsError, match="are synthetic splits"):
        validate({"data": {"source": "virl39k", "path": str(tmp_path)}, "eval": {"splits": ["test"]}})
    with pytest.raises(ParamsError, match="both empty"):
        validate({"eval": {"splits": []}})


@pytest.mark.parametrize("name", ["qwen2_5_vl_3b", "qwen2_5_vl_7b"])
def test_real_checkpoint_params(name, tmp_path):
    raw = merged_params(ROOT / "params/default.yaml", ROOT / f"params/{name}.yaml")
    with pytest.raises(ParamsError) as err:
        validate(raw, name)
    assert raw["model"]["path"] in str(err.value) and raw["data"]["path"] in str(err.value)
    local = {"model": {"path": str(tmp_path)}, "data": {"path": str(tmp_path)},
             "benchmarks": {b: {"path": str(tmp_path)} for b in raw["benchmarks"]}}
    params = validate(deep_merge(raw, local), name)
    assert params.train.learning_rate == 1e-6 and params.train.max_completion_length == 2048
    # Every benchmark is graded but DynaMath's 10-variant copy (opt-in: 10x the generation).
    assert params.eval.k == 8 and set(params.eval.benchmarks) == set(params.benchmarks) - {"dynamath_variants"}
    assert params.benchmarks["dynamath_variants"].split == "all"
    assert "<think>" in params.prompt.template and "\\boxed{}" in params.prompt.template
    assert params.resources.train.snakemake()["gpu"] == params.train.num_processes
    assert params.benchmarks["mathverse_vision_only"].where == {"problem_version": ["Vision Only"]}


def test_benchmark_rules_plan_conversion_and_grading(tmp_path):
    hallusionbench(tmp_path / "hb")
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "benchmarks": {"hb": {"source": "hallusionbench", "path": str(tmp_path / "hb")}}, "eval": {"benchmarks": ["hb"]},
    }))  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "work"), "--configfile", str(config),
         "-n", "--cores", "1", "results/eval/sft/hb.json", "results/eval/sft/test.json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "rule prepare_benchmark" in text and text.count("rule grade:") == 1  # one job per policy
    # The benchmark is decoded from its converted copy, the synthetic split from results/data.
    assert "--data results/benchmarks/hb.parquet --out results/rollouts/sft/hb/sampled.parquet" in text
    assert "--data results/data/test.parquet --out results/rollouts/sft/test/sampled.parquet" in text


# Answer and option helpers.


@pytest.mark.parametrize(
    ("text", "choices"),
    [
        ("Find it.\nChoices:\nA:30°\nB:60°", ("30°", "60°")),
        ("How many? Select from A-D. \n A) 10 B) 12 C) 14", ("10", "12", "14")),
        ("A. 1.5;B. 2; C. None", ("1.5", "2", "None")),
        ("Which? (A) odd (B) even\nAnswer with a letter.", ("odd", "even")),
        ("Point A. lies on the line.", ()),
    ],
)
def test_choices_in_text(text, choices):
    assert choices_in_text(text) == choices


def test_answer_helpers():
    assert unbox("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}" and unbox(" 7 ") == "7"
    assert [infer_answer_type(a) for a in ("12", "-0.5", "B", "A, C", "No", "2\\sqrt{3}")] == [
        "integer", "number", "multiple_choice", "multiple_choice", "yes_no", "expression",
    ]  # fmt: skip
    assert option_letters("A triangle") is None and option_letters("(b)") == ("B",)
