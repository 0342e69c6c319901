import pytest

from tokencredit.atomic import atomic_path, write_json, write_text


def test_a_failed_write_leaves_the_previous_output_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_directory_is_replaced_as_a_whole(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "a").write_text("1")
    with atomic_path(target, directory=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_leftovers_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".model.abc123.tmp").mkdir()
    (tmp_path / ".model.abc123.tmp" / "weights").write_bytes(b"x" * 10)
    (tmp_path / ".metrics.json.x1.tmp").write_text("{")
    (tmp_path / ".other.q.tmp").write_text("not ours")
    write_json(tmp_path / "metrics.json", {"a": 1})
    with atomic_path(tmp_path / "model", directory=True) as tmp:
        (tmp / "w").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.q.tmp", "metrics.json", "model"]


def test_outputs_get_the_usual_permissions_not_owner_only(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        write_text(tmp_path / "summary.md", "x")
        with atomic_path(tmp_path / "model", directory=True) as tmp:
            (tmp / "w").write_text("1")
    finally:
        os.umask(mask)
    assert (tmp_path / "summary.md").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755
