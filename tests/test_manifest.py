import json

from tokencredit.manifest import manifest_path, write_manifest


def test_manifest_lists_every_file_with_its_hash_and_tracks_content(tmp_path):
    model = tmp_path / "sft"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "weights.bin").write_bytes(b"\x00\x01")
    path = write_manifest(model)
    assert path == manifest_path(model) == tmp_path / "sft.manifest.json"
    first = path.read_bytes()
    content = json.loads(first)
    assert content["directory"] == "sft" and sorted(content["files"]) == ["config.json", "sub/weights.bin"]
    write_manifest(model)
    assert path.read_bytes() == first  # same content, same bytes: Snakemake's checksum sees no change
    (model / "sub" / "weights.bin").write_bytes(b"\x00\x02")
    write_manifest(model)
    assert path.read_bytes() != first
