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
from tokencredit.sources import get_adapter, registered
from tokencredit.sources.answers import infer_answer_type, option_letters, unbox
from tokencredit.sources.benchmark import load_benchmark, write_benchmark
from tokencredit.sources.convert import convert
from tokencredit.sources.questions import choices_in_text
from tokencredit.sources.records import lookup, read_rows
from tokencredit.sources.schema import ANSWER_TYPES, COLUMNS, BadRow, SourceError
from tokencredit.sources.training import write_training_splits

ROOT = Path(__file__).resolve().parents[1]
PROMPT = PromptParams(template="{question} Put the final answer in \\boxed{}.")


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


def geometry3k(root: Path) -> None:
    for split, n in (("train", 6), ("validation", 2), ("test", 3)):
        rows = [{"images": [embedded()], "problem": f"<image>Find x. ({i})", "answer": str(i + 2)} for i in range(n)]
        write_parquet(root / f"data/{split}-00000-of-00001.parquet", rows)


def virl39k(root: Path) -> None:
    rows = []
    for i in range(5):
        write_png(root / f"images/q{i}-0.png")
        answer = "\\boxed{B}" if i == 0 else f"\\boxed{{{i}}}"
        question = "<image>Which? Choices:\n(A) 1\n(B) 2" if i == 0 else f"<image>How many? ({i})"
        rows.append({"qid": f"q{i}", "question": question, "answer": answer, "image": [f"images/q{i}-0.png"],
                     "category": "math", "source": "MMK12", "PassRate_7BTrained": 0.5, "PassRate_32BTrained": 0.75})
    write_parquet(root / "39Krelease.parquet", rows)


def mmk12(root: Path) -> None:
    for split in ("train", "test"):
        rows = [
            {"id": f"{split}-0", "question": "What is 2+2?", "answer": "4", "subject": "math", "image": embedded()},
            {"id": f"{split}-1", "question": "Which gas? A. O2 B. N2 C. CO2 D. H2", "answer": "C", "subject": "chemistry", "image": embedded()},
        ]
        write_parquet(root / f"data/{split}-00000-of-00001.parquet", rows)


def mathvista(root: Path) -> None:
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
    write_parquet(root / "testmini.parquet", rows)


def mathvision(root: Path) -> None:
    write_png(root / "images/1.png")
    rows = [
        {"id": "1", "question": "<image1>Which figure is next?", "options": ["A", "B", "C", "D", "E"], "image": "images/1.png",
         "decoded_image": None, "answer": "C", "solution": None, "level": 2, "subject": "logic"},
        {"id": "2", "question": "<image1>How long is the side?", "options": [], "image": "images/1.png",
         "decoded_image": embedded("images/1.png"), "answer": "12", "solution": "...", "level": 3, "subject": "metric geometry - length"},
    ]
    write_parquet(root / "data/test-00000-of-00001.parquet", rows)


def wemath(root: Path) -> None:
    write_png(root / "3steps/image/165-3.png")
    rows = [{"ID": "3steps_165", "split": "testmini", "knowledge concept": "Area of Circles", "question": "What is the area (  ) m²?",
             "option": "A. 200.96;B. 3215.36;C. 6280;D. 32; E. No correct answer", "answer": "B", "image_path": "3steps/image/165-3.png",
             "key": "3steps_3", "question number": 1575, "knowledge concept description": "..."}]
    (root / "testmini.json").write_text(json.dumps(rows))


def dynamath(root: Path) -> None:
    rows = [
        {"id": "1", "question": "Which is true? (A) f is odd (B) f is even", "image": "images/1.png", "decoded_image": embedded(),
         "ground_truth": "B", "answer_type": "multiple choice", "subject": "analytic geometry", "knowledge_level": "high school"},
        {"id": "2", "question": "What is f(2)?", "image": "images/2.png", "decoded_image": embedded(),
         "ground_truth": "3.5", "answer_type": "float", "subject": "algebra", "knowledge_level": "high school"},
    ]
    write_parquet(root / "data/sample1-00000-of-00001.parquet", rows)


def logicvista(root: Path) -> None:
    write_png(root / "data/images/v1_0.png")
    write_png(root / "data/images/v1_1.png")
    rows = {
        "v1_0": {"imagename": "v1_0.png", "question": "Which choices (A-D) belong to the green category?", "answer": "A, C",
                 "reasoning": "...", "skill": ["inductive"], "capability": ["diagram"]},
        "v1_1": {"imagename": "v1_1.png", "question": "How many triangles? Select from A-D. \n A) 10 B) 12 C) 14 D) 16", "answer": "C",
                 "reasoning": "...", "skill": ["numerical"], "capability": ["diagram"]},
    }
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data/dataset.json").write_text(json.dumps(rows))


def hallusionbench(root: Path) -> None:
    def row(category, figure, question, gt, visual="1"):
        return {"category": category, "subcategory": "chart", "visual_input": visual, "set_id": "0", "figure_id": figure,
                "sample_note": "", "question_id": question, "question": f"Is it {question}?", "gt_answer_details": "",
                "gt_answer": gt, "filename": f"./VD/chart/0_{figure}.png", "image": embedded() if visual != "0" else None}

    write_parquet(root / "data/image-00000-of-00001.parquet", [row("VD", "0", "0", "1"), row("VD", "1", "0", "0", "2")])
    write_parquet(root / "data/non_image-00000-of-00001.parquet", [row("VS", "0", "0", "1", "0")])


def mmmu_pro_vision(root: Path) -> None:
    rows = [{"id": "test_1", "image": embedded(), "options": "['12 V', '24 V', '36 V']", "answer": "B", "subject": "Physics"}]
    write_parquet(root / "vision/test-00000-of-00004.parquet", rows)


FIXTURES = {
    "geometry3k": (geometry3k, "test", 3), "virl39k": (virl39k, "train", 5), "mmk12": (mmk12, "test", 2),
    "mathvista": (mathvista, "testmini", 2), "mathverse": (mathverse, "testmini", 6), "mathvision": (mathvision, "test", 2),
    "wemath": (wemath, "testmini", 1), "dynamath": (dynamath, "sample_variant1", 2), "logicvista": (logicvista, "test", 2),
    "hallusionbench": (hallusionbench, "all", 3), "mmmu_pro_vision": (mmmu_pro_vision, "test", 1),
}  # fmt: skip


def converted(name: str, root: Path, **kwargs) -> tuple[pd.DataFrame, int]:
    make, split, _ = FIXTURES[name]
    make(root)
    return convert(get_adapter(name), root, kwargs.pop("split", split), root.parent / "out" / name, f"images/{name}", **kwargs)


def by_id(frame: pd.DataFrame) -> dict[str, dict]:
    return {row["id"]: row for row in frame.to_dict("records")}


# Every adapter on its fixture.


def test_every_adapter_has_a_fixture():
    assert sorted(FIXTURES) == registered()


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_adapter_converts_its_published_format(name, tmp_path):
    frame, skipped = converted(name, tmp_path / "release", template="{question} Box it.")
    assert skipped == 0 and len(frame) == FIXTURES[name][2]
    assert list(frame.columns) == list(COLUMNS)
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


def test_option_lists_are_read_from_each_release(tmp_path):
    wemath_rows = by_id(converted("wemath", tmp_path / "w")[0])
    assert wemath_rows["3steps_165"]["choices"] == ["200.96", "3215.36", "6280", "32", "No correct answer"]
    assert wemath_rows["3steps_165"]["family"] == "3steps"
    mmmu = by_id(converted("mmmu_pro_vision", tmp_path / "m")[0])
    assert mmmu["test_1"]["choices"] == ["12 V", "24 V", "36 V"]
    logic = by_id(converted("logicvista", tmp_path / "l")[0])
    assert (logic["v1_0"]["answer"], logic["v1_0"]["answer_type"], logic["v1_0"]["family"]) == ("A, C", "multiple_choice", "inductive")
    assert logic["v1_1"]["choices"] == ["10", "12", "14", "16"]
    dyna = by_id(converted("dynamath", tmp_path / "d")[0])
    assert dyna["1"]["choices"] == ["f is odd", "f is even"] and dyna["2"]["answer_type"] == "number"


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
    wemath(json_root)
    record = json.loads((json_root / "testmini.json").read_text())[0]
    (json_root / "testmini.json").write_text(json.dumps([record, {k: v for k, v in record.items() if k != "option"} | {"ID": "2"}]))
    with pytest.raises(SourceError, match=r"testmini\.json row 1 \(wemath/testmini\): missing field 'option'"):
        convert(get_adapter("wemath"), json_root, "testmini", tmp_path / "o", "images/x")
    (json_root / "testmini.json").write_text(json.dumps([record, "not a row"]))
    frame, skipped = convert(get_adapter("wemath"), json_root, "testmini", tmp_path / "o", "images/x", on_bad_row="skip")
    assert (len(frame), skipped) == (1, 1)


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
    assert skipped == 2 and frame["id"].tolist() == ["VD_map_0_0_0"]
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
    with pytest.raises(SourceError, match=r"no published file matching \['data/test-\*\.parquet'\]"):
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
    assert write_training_splits(data, PROMPT, tmp_path / "data") == 0
    train, validation = (pd.read_parquet(tmp_path / f"data/{s}.parquet") for s in ("train", "validation"))
    assert (len(train), len(validation)) == (4, 2)
    assert set(train["split"]) == {"train"} and set(validation["split"]) == {"validation"}
    assert validation["image"].str.startswith("images/validation/").all()
    assert all((tmp_path / "data" / rel).is_file() for rel in [*train["image"], *validation["image"]])
    assert train["question"][0] == "Find x. (0) Put the final answer in \\boxed{}."


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


def test_benchmark_round_trip_and_its_checks(tmp_path):
    mathvista(tmp_path / "mv")
    spec = BenchmarkSpec(source="mathvista", path=str(tmp_path / "mv"))
    assert write_benchmark("mathvista", spec, PROMPT, tmp_path / "bench") == 0
    frame = load_benchmark(tmp_path / "bench", "mathvista")
    assert set(frame["split"]) == {"mathvista"} and frame["choices"][0] == ["30°", "60°", "90°"]
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
    with pytest.raises(ValueError, match="unknown dataset adapter 'virl40k'"):
        DataParams(source="virl40k", path=str(tmp_path))
    with pytest.raises(ValueError, match="source 'synthetic' reads no files"):
        DataParams(path=str(tmp_path))
    with pytest.raises(ValueError, match="no published split 'testmax'"):
        BenchmarkSpec(source="mathvista", path=str(tmp_path), split="testmax")
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
    assert params.eval.k == 8 and set(params.eval.benchmarks) == set(params.benchmarks)
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
