"""Beyond one process: two CPU processes (gloo) started by `accelerate launch` weight the global
batch exactly as one process does, DAPO's dynamic sampling keeps the processes in step, the train
step trains a bf16 checkpoint under bf16 mixed precision with DDP and with FSDP (accelerate's, made
to run on CPU by tests/fsdp_on_cpu.py), tracks and saves from one process only, and ends with the
same weights on every process; the SLURM profile plans the default grid without a cluster.

Run as a script (`python tests/test_distributed.py OUT DATA BASE`, under `accelerate launch` or
not), this file is also the training worker the first tests start.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "workflow/accelerate"
# Methods with batch-wide statistics: top-rho quantiles (entropy_topk, tor) and VPPO's min/max over
# responses. VPPO reads a deterministic counterfactual here so that both runs score the same inputs,
# and pools over the global batch (its authors' default pools per process, which a split changes).
METHODS = {"entropy_topk": {}, "tor": {}, "vppo": {"counterfactual": "gray", "hparams": {"tas_scope": "batch"}}}


# -- the worker: one short training run per method, in every process -------------------------------------
def alternating_reward(completion_ids, **_):
    """Mixed rewards in every group of 4, whatever the completions (the same in both runs)."""
    return [float(i % 2) for i in range(len(completion_ids))]


def make_trainer(data_dir: Path, base_dir: Path, out: Path, weighting: str, algo: str, reward, counterfactual=None, hparams=None):
    from tokencredit.algorithms import get_algorithm
    from tokencredit.dataset import load_split
    from tokencredit.models import load_policy
    from tokencredit.params import MethodSpec, ModelParams, TrainParams
    from tokencredit.trainer import WeightedGRPOTrainer
    from tokencredit.training import grpo_config, grpo_dataset
    from tokencredit.recipe import resolve

    processes = int(os.environ.get("WORLD_SIZE", "1"))
    train = TrainParams(max_steps=1, prompts_per_step=2, num_generations=4, max_completion_length=12, save_steps=100, num_processes=processes)
    model, processor = load_policy(base_dir, ModelParams())
    config = grpo_config(train, get_algorithm(algo), [1.0], seed=0, output_dir=out / f"{algo}-{weighting}")
    config.generation_kwargs = {"do_sample": False}  # greedy: both runs generate the same completions
    return WeightedGRPOTrainer(
        model=model,
        processing_class=processor,
        args=config,
        train_dataset=grpo_dataset(load_split(data_dir, "train"), data_dir),
        reward_funcs=[reward],
        recipe=resolve(weighting, MethodSpec(weighting=weighting, hparams=hparams or {}, counterfactual=counterfactual)),
        chunk_size=7,
        attention_layers=[-1],
        dynamic_sampling_tries=4 if get_algorithm(algo).dynamic_sampling else 0,
    )


def dapo_reward_factory():
    """The main process's first group gets equal rewards, every other group mixed ones: the main
    process needs a second generation round, which the other process (already full) must join."""
    from tokencredit.training import is_main_process

    calls = []

    def reward(completion_ids, **_):
        calls.append(1)
        if is_main_process() and len(calls) == 1:
            return [0.0] * len(completion_ids)
        return alternating_reward(completion_ids)

    return reward


def check_uneven_widths(trainer) -> None:
    """Processes whose completions differ in width: the gathered batch is padded, and every process
    gets back the weights the whole batch gives its own rows (ToR: top-rho thresholds)."""
    import torch

    from tokencredit.signals import TokenSignals
    from tokencredit.weighting import build_weighting

    rank, processes, rows = trainer.accelerator.process_index, trainer.accelerator.num_processes, 4
    widths = [3 + 2 * r for r in range(processes)]  # process r's completions are 3 + 2r tokens wide
    g = torch.Generator().manual_seed(0)  # every process builds the same global batch
    width_of_row = torch.tensor(widths).repeat_interleave(rows)
    lengths = 1 + (torch.rand(rows * processes, generator=g) * width_of_row).long()
    mask = torch.arange(max(widths))[None, :] < lengths[:, None]
    entropy, absdiff = (torch.rand(mask.shape, generator=g) * mask for _ in range(2))
    advantages = torch.randn(rows * processes, generator=g)
    tor = build_weighting("tor")
    expected = tor(TokenSignals(mask=mask, entropy=entropy, vis_absdiff=absdiff), advantages)

    mine, width = slice(rank * rows, (rank + 1) * rows), widths[rank]
    local = TokenSignals(mask=mask[mine, :width], entropy=entropy[mine, :width], vis_absdiff=absdiff[mine, :width])
    signals, gathered = trainer._global_batch(local, advantages[mine])
    assert torch.equal(trainer._local_rows(tor(signals, gathered), width), expected[mine, :width])


def worker(out_file: Path, data_dir: Path, base_dir: Path) -> None:
    import torch

    from tokencredit.atomic import write_json
    from tokencredit.training import is_main_process

    torch.set_num_threads(1)
    scratch = out_file.parent / f"{out_file.stem}-checkpoints"
    logged = {}
    for weighting, spec in METHODS.items():
        trainer = make_trainer(data_dir, base_dir, scratch, weighting, "grpo", alternating_reward, **spec)
        trainer.train()
        logged[weighting] = trainer.state.log_history[0]
    check_uneven_widths(trainer)
    trainer = make_trainer(data_dir, base_dir, scratch, "uniform", "dapo", dapo_reward_factory())
    trainer.train()
    logged["dapo"] = trainer.state.log_history[0]
    trainer = make_trainer(data_dir, base_dir, scratch, "uniform", "dapo", alternating_reward)
    loss_tokens = []
    generate_and_score = trainer._generate_and_score_completions

    def recorded(inputs):
        batch = generate_and_score(inputs)
        loss_tokens.append(int(batch["num_items_in_batch"]))
        return batch

    trainer._generate_and_score_completions = recorded
    trainer.train()
    logged["dapo_one_round"] = {**trainer.state.log_history[0], "loss_tokens": loss_tokens[0]}
    if is_main_process():
        write_json(out_file, logged)


# -- the tests -------------------------------------------------------------------------------------------
def run(cmd: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])  # the checkout's code, whatever is installed
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
    return out


def launch(processes: int, *args: str, module: bool = False, engine: str = "ddp") -> list[str]:
    """The command that starts `args` in `processes` gloo processes, as the train rule does. FSDP runs
    the module through tests/fsdp_on_cpu.py: accelerate builds FSDP for accelerator devices only."""
    if processes == 1:
        return [sys.executable, *(["-m"] if module else []), *args]
    config = ["--config_file", str(CONFIGS / f"{engine}.yaml"), "--num_processes", str(processes), "--main_process_port", "0"]
    if engine == "fsdp":
        return ["accelerate", "launch", *config, str(ROOT / "tests/fsdp_on_cpu.py"), *args]
    return ["accelerate", "launch", *config, *(["-m"] if module else []), *args]


def test_two_processes_weight_the_global_batch_like_one(tiny_world, tmp_path):
    data_dir, base_dir = tiny_world
    logged = {}
    for processes in (1, 2):
        out = tmp_path / f"{processes}.json"
        run(launch(processes, __file__, str(out), str(data_dir), str(base_dir)), env={"OMP_NUM_THREADS": "1"})
        logged[processes] = json.loads(out.read_text())
    for method in METHODS:
        one, two = logged[1][method], logged[2][method]
        # The same global batch: same prompts, same greedy completions, same rewards.
        for key in ("completions/mean_length", "reward", "reward_std"):
            assert two[key] == pytest.approx(one[key]), key
        stats = [key for key in one if key.startswith(("weights/", "signals/"))]
        assert "weights/frac_selected" in stats and "weights/weight_max" in stats
        assert all(f"time/{part}_s" in two for part in ("generation", "reward", "signals"))  # the step's split
        for key in stats:
            assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), f"{method} {key}: 2 processes {two[key]}, 1 process {one[key]}"
    # DAPO's token-mean loss divides by the loss tokens of the whole batch: both processes count them all.
    one, two = logged[1]["dapo_one_round"], logged[2]["dapo_one_round"]
    assert two["dynamic_sampling/rounds"] == one["dynamic_sampling/rounds"] == 1
    assert two["loss_tokens"] == one["loss_tokens"] > 0
    dapo = logged[2]["dapo"]
    assert dapo["dynamic_sampling/rounds"] == 2  # both processes took part in the main process's second round
    assert dapo["dynamic_sampling/dropped_frac"] == pytest.approx(1 / 4)  # 1 of the 4 groups seen over both processes
    assert dapo["dynamic_sampling/unfilled_frac"] == 0


@pytest.fixture(scope="module")
def bf16_base(tiny_world, tmp_path_factory) -> Path:
    """The tiny base saved in bf16, as Qwen2.5-VL's checkpoints are."""
    from tokencredit.manifest import write_manifest
    from tokencredit.models import load_policy, save_policy

    path = tmp_path_factory.mktemp("bf16") / "base"
    save_policy(*load_policy(tiny_world[1]), path, dtype=torch.bfloat16)
    write_manifest(path)
    return path


def train_in_two_processes(data_dir: Path, base: Path, cwd: Path, engine: str, method: str, spec: dict) -> tuple[Path, str]:
    """The train rule's command with train.num_processes = 2 under bf16 mixed precision: the run's
    output directory and the job's log."""
    from tokencredit.params import MethodSpec, ModelParams, ScoringParams, TrainParams

    # The entropy penalty gives the step a gradient although the tiny policy earns no reward.
    train = TrainParams(
        max_steps=1, prompts_per_step=2, num_generations=4, max_completion_length=8, save_steps=100, num_processes=2,
        distributed=engine, mixed_precision="bf16", entropy_penalty=0.5, learning_rate=1e-3,
    )  # fmt: skip
    out = cwd / f"results/runs/grpo-{method}-s0"
    args = [
        "steps.train", "--params", train.model_dump_json(), "--method-spec", MethodSpec(**spec).model_dump_json(),
        "--scoring", ScoringParams().model_dump_json(), "--model-params", ModelParams().model_dump_json(),
        "--algo", "grpo", "--method", method, "--seed", "0", "--init", str(base), "--data", str(data_dir), "--out", str(out),
    ]  # fmt: skip
    db = cwd / "mlflow.db"
    env = {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "MLFLOW_EXPERIMENT_NAME": "distributed"}
    done = run(launch(2, *args, module=True, engine=engine), cwd=cwd, env=env, timeout=300)
    return out, done.stdout + done.stderr


def check_trained_alike_and_saved_once(out: Path, log: str) -> None:
    """Every process ends with the same full state dict; one MLflow run, one policy, saved in bf16."""
    digests = dict(re.findall(r"process (\d): state dict sha256 (\w+)", log))
    assert sorted(digests) == ["0", "1"] and len(set(digests.values())) == 1, digests
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(out / "model.safetensors", "pt") as saved:
        assert {saved.get_slice(name).get_dtype() for name in saved.keys()} == {"BF16"}
    assert (out.parent / f"{out.name}.manifest.json").is_file()
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss" in row for row in logged) == 1  # one step, logged once (by the main process)
    assert logged[0]["grad_norm"] > 0
    cwd = out.parents[2]
    assert not (cwd / f"results/checkpoints/{out.name}").exists()
    with sqlite3.connect(cwd / "mlflow.db") as connection:
        assert connection.execute("SELECT status FROM runs").fetchall() == [("FINISHED",)]
    assert not (cwd / "mlflow_fallback").exists()


def test_train_step_with_ddp_in_two_processes(tiny_world, bf16_base, tmp_path):
    """AT-RL (attention to the image, read in the scoring forward) under DDP: the bf16 checkpoint is
    upcast to fp32 master weights (training.fp32_master_weights) and computes under bf16 autocast."""
    out, log = train_in_two_processes(tiny_world[0], bf16_base, tmp_path, "ddp", "atrl", {"weighting": "atrl"})
    check_trained_alike_and_saved_once(out, log)


def test_train_step_with_fsdp_in_two_processes(tiny_world, bf16_base, tmp_path):
    """VPPO (a counterfactual scoring forward) under accelerate's FSDP: the first process loads the
    weights (cpu_ram_efficient_loading), FSDP shards and accelerate upcasts them to fp32; scoring and
    generation run the root's fp32 weights and the wrapped blocks' bf16 ones under autocast."""
    out, log = train_in_two_processes(tiny_world[0], bf16_base, tmp_path, "fsdp", "vppo", {"weighting": "vppo", "counterfactual": "gray"})
    assert "Upcasted low precision parameters" in log  # accelerate's fp32 upcast of FSDP's bf16 shards
    check_trained_alike_and_saved_once(out, log)


def test_processes_that_do_not_divide_the_batch_fail_at_validation():
    from tokencredit.params import ParamsError, validate

    with pytest.raises(ParamsError, match=r"prompts_per_step \(6\) is not divisible by num_processes \(4\)"):
        validate({"train": {"prompts_per_step": 6, "num_processes": 4}})
    with pytest.raises(ParamsError, match=r"resources.train.gpus \(1\) must equal train.num_processes \(2\)"):
        validate({"train": {"num_processes": 2}, "resources": {"train": {"gpus": 1}}})


def test_missing_engines_and_a_wrong_process_count_fail_at_start(tiny_world, tmp_path):
    from tokencredit.algorithms import get_algorithm
    from tokencredit.dataset import load_split
    from tokencredit.models import load_policy
    from tokencredit.params import MethodSpec, ModelParams, ScoringParams, TrainParams
    from tokencredit.training import build_trainer, require_engines

    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(RuntimeError, match="train.use_vllm: true needs the `vllm` package"):
            require_engines(TrainParams(use_vllm=True, max_prompt_length=64))
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    with pytest.raises(RuntimeError, match="num_processes 2"):
        build_trainer(
            model, processor, load_split(data_dir, "train"), data_dir, TrainParams(num_processes=2),
            MethodSpec(weighting="uniform"), ScoringParams(), get_algorithm("grpo"), 0, tmp_path,
        )  # fmt: skip


def test_an_engine_config_that_contradicts_the_params_fails_before_any_work(monkeypatch):
    from tokencredit.params import TrainParams
    from tokencredit.training import check_launch

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch` exports from its config
    with pytest.raises(RuntimeError, match=r"train.mixed_precision is 'no' .* launched with mixed_precision 'bf16'"):
        check_launch(TrainParams(num_processes=2, prompts_per_step=2, mixed_precision="no"))
    check_launch(TrainParams(num_processes=2, prompts_per_step=2, mixed_precision="bf16"))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # the shipped configs: precision left to the params
    check_launch(TrainParams(num_processes=2, prompts_per_step=2, mixed_precision="bf16"))
    with pytest.raises(RuntimeError, match=r"train.num_processes is 4 but 2 process\(es\) run"):
        check_launch(TrainParams(num_processes=4, prompts_per_step=4))


def test_a_job_asking_for_gpus_stops_when_none_is_visible(monkeypatch):
    from steps.common import require_gpus

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"resources.train.gpus is 8 but no GPU is visible to this job"):
        require_gpus(8, "train")
    require_gpus(0, "train")


def test_slurm_profile_plans_the_default_grid_without_a_cluster(tmp_path):
    project = tmp_path / "project"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in files.stdout.split():
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, project / name)
    gpus = tmp_path / "gpus.yaml"
    gpus.write_text(
        "train: {num_processes: 2}\n"
        "resources: {train: {gpus: 2, gpu_model: h100, partition: gpu}, rollouts: {gpus: 1, partition: gpu}, sft: {gpus: 1, partition: gpu}}\n"
    )
    out = run(["snakemake", "--profile", "workflow/profiles/slurm", "-n", "--configfile", str(gpus)], cwd=project)
    text = out.stdout + out.stderr
    assert "executor: slurm" in (project / "workflow/profiles/slurm/config.yaml").read_text()
    from tokencredit.params import load_params

    grid = load_params(project / "params/default.yaml").train
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", text.split("Job stats:")[1], flags=re.M))
    assert int(counts["train"]) == len(grid.algos) * len(grid.methods) * len(grid.seeds)
    train_jobs = [job for job in text.split("\nrule ") if job.startswith("train:")]
    assert train_jobs and all("gpu=2" in job and "gpu_model=h100" in job for job in train_jobs)
    jobs = {job.split(":")[0]: job for job in text.split("\nrule ")[1:]}
    assert "gpu=1" in jobs["sft"] and "slurm_partition=gpu" in jobs["sft"]  # sft honours resources.sft
    # CPU rules ask for no GPU and no GPU partition: the profile's default-resources name neither.
    for rule in ("prepare_data", "build_base", "grade", "report"):
        assert "gpu=" not in jobs[rule].replace("gpu=0", "") and "slurm_partition" not in jobs[rule], jobs[rule]
    # exec: the trainer replaces the job's shell, so killing the job reaches it (no orphan beside a rerun)
    assert "exec accelerate launch --config_file $TOKENCREDIT_ACCELERATE_CONFIGS/ddp.yaml --num_processes 2" in text


if __name__ == "__main__":
    worker(*map(Path, sys.argv[1:4]))
