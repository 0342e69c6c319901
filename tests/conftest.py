import torch

# One thread: tiny tensors gain nothing from more, and on a 2-core CI machine extra threads
# oversubscribe (a tiny forward took 0.9 s with 2 threads vs 9 ms with 1 under load).
torch.set_num_threads(1)


import pytest


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A small synthetic data dir and a tiny base VLM built from it (built once per test session)."""
    from tokencredit.dataset import load_split
    from tokencredit.params import DataParams, ModelParams
    from tokencredit.synthetic import write_splits
    from tokencredit.tiny_vlm import build_base

    root = tmp_path_factory.mktemp("tiny_world")
    data_dir, base_dir = root / "data", root / "base"
    write_splits(DataParams(n_train=64, n_validation=8, n_test=8, n_test_ood=8), data_dir)
    train = load_split(data_dir, "train")
    build_base(ModelParams(), [*train["question"], *train["target"]], base_dir)
    return data_dir, base_dir
