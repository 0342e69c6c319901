import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tokencredit.params import Params, ParamsError, RolloutParams, deep_merge, json_schema, load_params, merged_params, section_json, validate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "files",
    [("params/default.yaml",), ("params/default.yaml", "params/smoke.yaml"), ("params/default.yaml", "params/methods_full.yaml"),
     ("params/default.yaml", "params/controls.yaml"), ("params/default.yaml", "params/zoo.yaml"),
     ("params/default.yaml", "params/power.yaml"), ("params/default.yaml", "params/grit.yaml"),
     ("params/default.yaml", "params/ranking.yaml"), ("params/default.yaml", "params/vapo.yaml"),
     ("params/default.yaml", "params/noise_words.yaml")],
)
def test_shipped_params_are_valid(files):
    params = load_params(*(ROOT / f for f in files))
    assert params.train.methods and set(params.train.methods) <= set(params.methods)


def test_methods_merge_by_name_over_the_built_in_ones():
    built_in = Params().methods
    params = validate({"methods": {"tor": {"weighting": "tor", "hparams": {"rho_r": 0.2}}, "tor_wide": {"weighting": "tor", "hparams": {"rho_r": 0.5}}},
                       "train": {"methods": ["uniform", "tor", "tor_wide", "pgpo"]}})  # fmt: skip
    assert params.methods["tor"].hparams == {"rho_r": 0.2} and params.methods["tor_wide"].hparams == {"rho_r": 0.5}
    assert set(params.methods) == set(built_in) | {"tor_wide"}
    assert all(params.methods[name] == spec for name, spec in built_in.items() if name != "tor")


def test_dvc_params_file_is_the_default_set():
    """params.yaml (what DVC runs) is current: `python -m tokencredit.params --activate` rewrites it."""
    assert yaml.safe_load((ROOT / "params.yaml").read_text()) == merged_params(ROOT / "params/default.yaml")


def plain_target_methods(params) -> list[str]:
    """Every method but the reward sets, which need their own data and SFT model (params/grit.yaml, params/vapo.yaml)."""
    return sorted(m for m, spec in params.methods.items() if spec.reward is None)


def test_methods_full_grid_covers_every_method_and_ablation():
    params = load_params(ROOT / "params/default.yaml", ROOT / "params/methods_full.yaml")
    assert sorted(params.train.methods) == plain_target_methods(params)
    grit = load_params(ROOT / "params/default.yaml", ROOT / "params/grit.yaml")
    vapo = load_params(ROOT / "params/default.yaml", ROOT / "params/vapo.yaml")
    assert sorted(set(params.methods) - set(params.train.methods)) == ["grit", "grit_fork", "vapo"]
    assert "grit" in grit.train.methods and "vapo" in vapo.train.methods
    assert params.train.algos == ["grpo", "dapo"] and len(params.train.seeds) == 3


def test_load_params_reads_yaml(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  max_steps: 7\n")
    assert load_params(path).train.max_steps == 7


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"train": {"max_stepz": 3}}, "train.max_stepz: Extra inputs are not permitted"),
        ({"train": {"max_steps": "many"}}, "train.max_steps"),
        ({"train": {"max_steps": 0}}, "train.max_steps: Input should be greater than or equal to 1"),
        ({"data": {"min_objects": 5, "max_objects": 2}}, "min_objects (5) > max_objects (2)"),
        ({"data": {"families": ["count_everything"]}}, "data.families.0"),
        ({"train": {"seeds": [1, 1]}}, "duplicates"),
        ({"train": {"methods": ["uniform", "nope"]}}, "train.methods names ['nope']"),
        ({"methods": {"x": {"weighting": "no_such_method"}}, "train": {"methods": ["x"]}}, "no_such_method"),
        ({"methods": {"t": {"weighting": "tor", "hparams": {"rho_r": 1.5}}}, "train": {"methods": ["t"]}}, "rho_r"),
        ({"model": {"path": "/nonexistent/qwen"}}, "/nonexistent/qwen"),
        ({"model": {"hidden_size": 130, "num_heads": 4}}, "not divisible"),
        ({"eval": {"splits": ["train"]}}, "eval.splits.0"),
        ({"prompt": {"template": "{question} Put it in \\boxed{}."}}, "template asks for '\\\\boxed', but answer_format is 'tags'"),
        ({"prompt": {"template": "{question} <answer></answer>", "answer_format": "boxed"}}, "asks for '<answer>'"),
        ({"prompt": {"answer_format": "latex"}}, "prompt.answer_format: Input should be 'boxed' or 'tags'"),
    ],
)
def test_bad_params_name_the_key_and_reason(raw, expected):
    with pytest.raises(ParamsError) as err:
        validate(raw, "test.yaml")
    assert expected in str(err.value)
    assert "test.yaml" in str(err.value)


def test_malformed_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(tmp_path / "missing.yaml")


def test_deep_merge_overrides_key_by_key():
    base = {"train": {"max_steps": 30, "seeds": [0, 1]}, "eval": {"k": 4}}
    merged = deep_merge(base, {"train": {"seeds": [3]}})
    assert merged == {"train": {"max_steps": 30, "seeds": [3]}, "eval": {"k": 4}}
    assert base["train"]["seeds"] == [0, 1]


def test_section_json_is_canonical_and_isolated():
    a = validate({"train": {"max_steps": 5}})
    b = validate({"train": {"max_steps": 5}, "eval": {"k": 2}})
    assert section_json(a, "train") == section_json(b, "train")
    assert section_json(a, "eval") != section_json(b, "eval")
    assert json.loads(section_json(a, "train"))["max_steps"] == 5


def test_eval_k_grades_cached_samples_only():
    with pytest.raises(ParamsError, match=r"eval.k \(8\) exceeds rollouts.num_samples \(4\)"):
        validate({"eval": {"k": 8}})
    assert validate({"eval": {"k": 8}, "rollouts": {"num_samples": 8}}).eval.k == 8


def test_greedy_decodings_are_keyed_by_their_token_budget_only():
    params = RolloutParams(temperature=0.5, num_samples=2)
    assert params.for_decoding("greedy") == params.for_decoding("no_image") == {"batch_size": 32, "max_new_tokens": 48}
    assert params.for_decoding("sampled") == params.model_dump(mode="json")
    with pytest.raises(ValueError, match="unknown decoding 'beam'"):
        params.for_decoding("beam")
    assert validate({}).eval.decodings == ["sampled", "greedy", "no_image"]
    assert validate({"eval": {"without_image": False}}).eval.decodings == ["sampled", "greedy"]


def test_grid_keys_stay_out_of_the_sections_rules_receive():
    """Adding a seed, method or split creates jobs; it must not change (and so rerun) existing ones."""
    a = validate({"train": {"seeds": [0], "methods": ["uniform"]}})
    b = validate({"train": {"seeds": [0, 1], "methods": ["uniform", "tor"]}, "eval": {"splits": ["test"]}})
    assert section_json(a, "train") == section_json(b, "train")
    assert section_json(a, "eval") == section_json(b, "eval")
    assert "seeds" not in json.loads(section_json(a, "train"))


def test_exported_schema_is_current():
    shipped = json.loads((ROOT / "params/schema.json").read_text())
    assert shipped == json_schema()
    out = subprocess.run([sys.executable, "-m", "tokencredit.params"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == shipped
    assert set(shipped["properties"]) == set(Params.model_fields)


def test_oracle_roles_on_real_data_names_the_method_and_the_source(tmp_path):
    copy = str(tmp_path)
    raw = {
        "data": {"source": "geometry3k", "path": copy}, "model": {"path": copy},
        "eval": {"splits": [], "benchmarks": ["b"]}, "benchmarks": {"b": {"source": "mathvista", "path": copy}},
        "train": {"methods": ["uniform", "oracle_perception"]},
    }  # fmt: skip
    with pytest.raises(ParamsError, match=r"methods\.oracle_perception \(weighting 'oracle_roles'\) reads ground-truth token roles.*data\.source is 'geometry3k'"):
        validate(raw)
    raw["train"]["methods"] = ["uniform", "random_tor"]
    validate(raw)  # the random twins need no roles


def test_default_grid_holds_the_methods_and_an_oracle_and_controls_add_the_twins():
    default = load_params(ROOT / "params/default.yaml").train
    assert {"uniform", "entropy_topk", "tor", "pgpo", "vppo", "atrl", "oracle_perception"} <= set(default.methods)
    assert len(default.seeds) >= 3
    controls = load_params(ROOT / "params/default.yaml", ROOT / "params/controls.yaml").train
    assert set(default.methods) < set(controls.methods)
    assert {"random_entropy_topk", "random_tor", "random_vppo", "random_atrl", "oracle_reasoning"} <= set(controls.methods)


def test_zoo_grid_trains_every_method_from_the_default_sft_model():
    default, zoo = load_params(ROOT / "params/default.yaml"), load_params(ROOT / "params/default.yaml", ROOT / "params/zoo.yaml")
    assert sorted(zoo.train.methods) == plain_target_methods(zoo)  # GRIT has its own grid: params/grit.yaml
    assert zoo.sft == default.sft and zoo.data == default.data and zoo.model == default.model  # the same SFT model
    assert section_json(zoo, "train") == section_json(default, "train")  # grid keys only: the default's runs are reused
