import shutil
from pathlib import Path

import pandas as pd
import pytest

from tokencredit.dataset import load_image, load_split, prompt_messages
from tokencredit.params import DataParams
from tokencredit.synthetic import SPLITS, write_splits

SMALL = DataParams(n_train=6, n_validation=3, n_test=3, n_test_ood=3)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("data")
    write_splits(SMALL, data_dir)
    return data_dir


@pytest.fixture
def data_dir(written, tmp_path) -> Path:
    """A private copy that a test may break."""
    return Path(shutil.copytree(written, tmp_path / "data"))


@pytest.mark.parametrize("split", SPLITS)
def test_load_split(written, split):
    frame = load_split(written, split)
    assert len(frame) == getattr(SMALL, f"n_{split}")
    image = load_image(written, frame["image"].iloc[0])
    assert image.mode == "RGB" and image.size == (SMALL.image_size, SMALL.image_size)


def test_missing_split_file(data_dir):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        load_split(data_dir, "nope")


def test_missing_column_names_file_and_column(data_dir):
    path = data_dir / "train.parquet"
    pd.read_parquet(path).drop(columns=["answer"]).to_parquet(path)
    with pytest.raises(ValueError, match=r"train\.parquet.*'answer'"):
        load_split(data_dir, "train")


def test_missing_image_names_file_and_row(data_dir):
    (data_dir / "images/test/test-000001.png").unlink()
    with pytest.raises(ValueError, match=r"test-000001\.png.*row id 'test-000001'"):
        load_split(data_dir, "test")


def test_empty_split(data_dir):
    path = data_dir / "validation.parquet"
    pd.read_parquet(path).iloc[:0].to_parquet(path)
    with pytest.raises(ValueError, match=r"validation\.parquet has no rows"):
        load_split(data_dir, "validation")


def test_corrupt_image_names_path(data_dir):
    (data_dir / "images/train/train-000002.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"train-000002\.png"):
        load_image(data_dir, "images/train/train-000002.png")


def test_unreadable_image_names_path(data_dir):
    with pytest.raises(ValueError, match=r"images/train/absent\.png"):
        load_image(data_dir, "images/train/absent.png")


def test_prompt_messages():
    assert prompt_messages("How many red shapes are there?") == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many red shapes are there?"}]}
    ]
    assert prompt_messages("Q?", n_images=0) == [{"role": "user", "content": [{"type": "text", "text": "Q?"}]}]
