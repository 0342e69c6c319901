"""The batch schedule: micro-batches with gradient accumulation, several optimizer steps per generated
batch, and rollout top-p, from TrainParams through TRL's GRPOConfig to the tiny model's training.

Gradient accumulation equals the whole-batch step for every base algorithm here, because TRL 1.16
normalises each micro-batch's loss so that the sum over an optimizer step is the whole batch's:
"grpo" takes the mean over sequences of per-sequence token means, divided by the accumulation steps
(micro-batches hold equally many sequences); "dr_grpo" divides by rows x max_completion_length and
the accumulation steps; "dapo" divides by the loss tokens of the generated batch over all processes.
Two things are not exact: TRL's full-vocabulary entropy term (train.entropy_penalty_form:
full_vocabulary) is a token mean per micro-batch, so micro-batches of unequal token counts weigh
their tokens unequally (the sampled form, VPPO's, divides by the step's tokens, as "dapo"); and with
updates_per_generation > 1, "dapo" divides each update by the generated batch's tokens over
updates_per_generation, the average of the updates' own counts.
"""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
import torch
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin
from accelerate.utils.deepspeed import HfDeepSpeedConfig
from accelerate.utils.launch import prepare_deepspeed_cmd_env
from transformers import TrainerCallback
from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig
from transformers.training_args import OptimizerNames

from tokencredit.algorithms import get_algorithm
from tokencredit.dataset import load_split
from tokencredit.losses import loss_named
from tokencredit.models import load_policy
from tokencredit.params import MethodSpec, ModelParams, ParamsError, ScoringParams, TrainParams, deep_merge, merged_params, section_json, validate
from tokencredit.sources import check_sources
from tokencredit.trainer import WeightedGRPOTrainer
from tokencredit.training import build_trainer, grpo_config, grpo_dataset
from tokencredit.recipe import resolve
from tokencredit.rollout_batch import mixed_groups
from tokencredit.weighting import METHODS, Layout

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"max_steps": 1, "prompts_per_step": 2, "num_generations": 4, "max_completion_length": 12, "save_steps": 100, "learning_rate": 1e-3}


# -- params to GRPOConfig -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("keys", "micro", "accumulation", "per_generation"),
    [
        ({}, 32, 1, 1),  # today's schedule: the whole batch in one forward, one update per generation
        ({"micro_batch_size": 32}, 32, 1, 1),
        ({"micro_batch_size": 4}, 4, 8, 8),
        ({"micro_batch_size": 8, "updates_per_generation": 3, "logging_steps": 3, "save_steps": 3}, 8, 4, 12),
    ],
)
def test_grpo_config_maps_the_batch_schedule(tmp_path, keys, micro, accumulation, per_generation):
    train = TrainParams(max_steps=6, prompts_per_step=8, num_generations=4, **keys)
    config = grpo_config(train, get_algorithm("grpo"), [1.0], seed=0, output_dir=tmp_path)
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps, config.steps_per_generation) == (
        micro, accumulation, per_generation,
    )  # fmt: skip
    assert micro * accumulation == 8 * 4  # one optimizer step: prompts_per_step x num_generations completions
    assert config.generation_batch_size == 8 * 4 * train.updates_per_generation
    assert config.generation_batch_size % config.num_generations == 0
    assert config.max_steps == 6 and config.top_p == 1.0


def test_top_p_reaches_the_config(tmp_path):
    config = grpo_config(TrainParams(top_p=0.99), get_algorithm("dapo"), [1.0], seed=0, output_dir=tmp_path)
    assert config.top_p == 0.99


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ({"prompts_per_step": 8, "num_generations": 4, "micro_batch_size": 3}, "micro_batch_size (3) does not divide"),
        ({"prompts_per_step": 8, "num_generations": 4, "num_processes": 2, "micro_batch_size": 32}, "8 x 4 / 2 = 16"),
        ({"micro_batch_size": 0}, "train.micro_batch_size"),
        ({"updates_per_generation": 0}, "train.updates_per_generation"),
        ({"updates_per_generation": 3, "max_steps": 30, "logging_steps": 1, "save_steps": 3}, "logging_steps (1) is not a multiple of updates_per_generation (3)"),
        ({"updates_per_generation": 3, "max_steps": 30, "logging_steps": 3, "save_steps": 10}, "save_steps (10) is not a multiple of updates_per_generation (3)"),
        ({"top_p": 0.0}, "train.top_p"),
        ({"top_p": 1.5}, "train.top_p"),
    ],
)
def test_bad_schedules_name_the_keys(train, expected):
    with pytest.raises(ParamsError) as err:
        validate({"train": train}, "test.yaml")
    assert expected in str(err.value)


def gpu_train_params(name: str, folder: Path) -> TrainParams:
    """The train section of a GPU params set, its local copies at `folder`."""
    return validate(local_copies(merged_params(ROOT / "params/default.yaml", ROOT / f"params/{name}.yaml"), folder), name).train


def local_copies(raw: dict, folder: Path) -> dict:
    """A GPU params set with every local copy it names (checkpoint, data, benchmarks, suite releases) at `folder`."""
    local = {"model": {"path": str(folder)}, "data": {"path": str(folder)}, "benchmarks": {b: {"path": str(folder)} for b in raw.get("benchmarks", {})}}
    if raw["data"].get("validation"):
        local["data"]["validation"] = {"path": str(folder)}
    if raw["eval"].get("suite_paths"):
        local["eval"] = {"suite_paths": {release: str(folder) for release in raw["eval"]["suite_paths"]}}
    return deep_merge(raw, local)


@pytest.mark.parametrize(("name", "updates"), [("qwen2_5_vl_3b", 3), ("qwen2_5_vl_7b", 1), ("qwen3_vl_4b", 3), ("qwen3_vl_8b", 3)])
def test_gpu_params_train_in_micro_batches(name, updates, tmp_path):
    raw = merged_params(ROOT / "params/default.yaml", ROOT / f"params/{name}.yaml")
    train = validate(local_copies(raw, tmp_path), name).train
    config = grpo_config(train, get_algorithm("dapo"), [1.0], seed=0, output_dir=tmp_path)
    assert config.per_device_train_batch_size <= 8 and config.top_p == 0.99
    global_step = config.per_device_train_batch_size * config.gradient_accumulation_steps * train.num_processes
    assert global_step == train.prompts_per_step * train.num_generations
    assert config.steps_per_generation == config.gradient_accumulation_steps * updates
    assert config.delta == train.dual_clip == 3.0  # EasyR1's dual-clip, as the papers train
    # Weighting statistics over the whole generated batch, as the papers take them, although the
    # embedded default under them reads entropy and attention from each micro-batch's loss forward.
    assert merged_params(ROOT / "params/default.yaml")["train"]["signals_from_loss"] and not train.signals_from_loss


def deepspeed_plugin_as_launched(config_file: Path, processes: int) -> DeepSpeedPlugin:
    """accelerate's DeepSpeedPlugin in a process that `accelerate launch --config_file ...` started: built
    from the variables the launcher exports (launch_command's DeepSpeed branch, without starting anything)."""
    args = launch_command_parser().parse_args(["--config_file", str(config_file), "--num_processes", str(processes), "-m", "steps.train"])
    args, defaults, _ = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    with mock.patch.dict(os.environ, {k: v for k, v in env.items() if k.startswith("ACCELERATE_")}):
        return DeepSpeedPlugin()


@pytest.mark.parametrize("engine", ["deepspeed_zero2", "deepspeed_zero3"])
@pytest.mark.parametrize(("name", "accumulation"), [("qwen2_5_vl_3b", 10), ("qwen2_5_vl_7b", 32)])
def test_deepspeed_configs_leave_gradient_accumulation_to_the_trainer(engine, name, accumulation, tmp_path):
    """transformers checks the DeepSpeed config against the Trainer's arguments at trainer start
    (HfTrainerDeepSpeedConfig.trainer_config_process) and refuses a fixed accumulation that differs:
    the shipped configs leave it "auto", which takes the schedule's. (deepspeed is not installed here:
    the check's methods run on accelerate's config class, which transformers' derives from.)"""
    train = gpu_train_params(name, tmp_path).model_copy(update={"mixed_precision": "bf16"})
    config = grpo_config(train, get_algorithm("dapo"), [1.0], seed=0, output_dir=tmp_path)
    assert config.gradient_accumulation_steps == accumulation
    plugin = deepspeed_plugin_as_launched(ROOT / f"workflow/accelerate/{engine}.yaml", train.num_processes)
    plugin.set_mixed_precision(config.mixed_precision)  # as TrainingArguments does under accelerate launch
    checks = {name: vars(HfTrainerDeepSpeedConfig)[name] for name in ("fill_match", "fill_only", "is_auto", "trainer_config_process")}
    ds_config = type("TrainerDeepSpeedConfig", (HfDeepSpeedConfig,), checks)(plugin.deepspeed_config)
    ds_config.mismatches, ds_config._dtype = [], None
    ds_config.trainer_config_process(config)
    assert ds_config.mismatches == []
    assert ds_config.config["gradient_accumulation_steps"] == accumulation and ds_config.config["bf16"]["enabled"]


# -- training the tiny model ----------------------------------------------------------------------------
def make_trainer(tiny_world, out, train: TrainParams, algo: str, method: str, reward, callbacks=()):
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    return WeightedGRPOTrainer(
        model=model,
        processing_class=processor,
        args=grpo_config(train, get_algorithm(algo), [1.0], seed=0, output_dir=out),
        train_dataset=grpo_dataset(load_split(data_dir, "train"), data_dir),
        reward_funcs=[reward],
        callbacks=list(callbacks),
        recipe=resolve(method, MethodSpec(weighting=method)),
        chunk_size=7,
        attention_layers=[-1],
        dynamic_sampling_tries=4 if get_algorithm(algo).dynamic_sampling else 0,
    )


def alternating_reward(completion_ids, **_):
    """Mixed rewards in every group of 4, whatever the completions."""
    return [float(i % 2) for i in range(len(completion_ids))]


class Gradients(TrainerCallback):
    """Every parameter's gradient just before each optimizer step."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs) -> None:
        self.steps.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))


def one_update(tiny_world, out, algo: str, micro_batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The parameter change and gradient of one optimizer step, and how many forwards it took."""
    train = TrainParams(**SMALL, micro_batch_size=micro_batch_size)
    gradients = Gradients()
    # entropy_topk: a top-rho threshold over the batch, which per-micro-batch weights would change
    trainer = make_trainer(tiny_world, out, train, algo, "entropy_topk", alternating_reward, [gradients])
    # Plain SGD: the update is -lr * gradient. Adam's first step, lr * g / |g|, turns float noise on
    # near-zero gradients into differences of a sizeable fraction of lr, which made this test flaky.
    trainer.args.optim = OptimizerNames.SGD
    forwards = []
    compute_loss = trainer.compute_loss

    def counted_loss(*args, **kwargs):
        forwards.append(1)
        return compute_loss(*args, **kwargs)

    trainer.compute_loss = counted_loss
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer.train()
    assert isinstance(getattr(trainer.optimizer, "optimizer", trainer.optimizer), torch.optim.SGD)
    after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    return after - before, gradients.steps[0], len(forwards)


@pytest.mark.parametrize("algo", ["grpo", "dr_grpo", "dapo"])
def test_micro_batches_give_the_whole_batch_update(tiny_world, tmp_path, algo):
    whole, whole_grad, whole_forwards = one_update(tiny_world, tmp_path / "whole", algo, None)
    micro, micro_grad, micro_forwards = one_update(tiny_world, tmp_path / "micro", algo, 2)
    assert (whole_forwards, micro_forwards) == (1, 4)  # 8 completions: one forward, or four of two
    assert whole_grad.abs().max() > 0
    torch.testing.assert_close(micro_grad, whole_grad, rtol=1e-4, atol=1e-7)
    # SGD: the change is lr times the (clipped) gradient, up to float32 rounding of the parameters (~1e-7)
    assert whole.abs().max() > 1e-5
    torch.testing.assert_close(micro, whole, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("algo", ["grpo", "dapo"])
def test_two_updates_per_generation_share_one_weighted_batch(tiny_world, tmp_path, algo):
    calls = []

    def reward(completion_ids, **_):
        # The first group's rewards are equal in the first round only: DAPO must generate a second round.
        calls.append(1)
        rewards = alternating_reward(completion_ids)
        return [0.0] * 4 + rewards[4:] if len(calls) == 1 else rewards

    train = TrainParams(**{**SMALL, "max_steps": 2}, micro_batch_size=4, updates_per_generation=2, logging_steps=2)
    trainer = make_trainer(tiny_world, tmp_path / algo, train, algo, "entropy_topk", reward)
    generated, rounds, weighted, trained = [], [], [], []
    outer, generate, weighting, compute_loss = (
        trainer._generate_and_score_completions, trainer._generate, trainer.weighting, trainer.compute_loss,
    )  # fmt: skip

    def generate_and_score(inputs):
        batch = outer(inputs)
        generated.append(batch["advantages"].clone())
        return batch

    def count_rounds(prompts):
        rounds.append(len(prompts))
        return generate(prompts)

    def weigh(signals, advantages, context):
        weighted.append(signals.mask.shape[0])
        return weighting(signals, advantages, context)

    def loss(model, inputs, *args, **kwargs):
        trained.append(inputs)
        return compute_loss(model, inputs, *args, **kwargs)

    trainer._generate_and_score_completions, trainer._generate, trainer.weighting, trainer.compute_loss = (
        generate_and_score, count_rounds, weigh, loss,
    )  # fmt: skip
    trainer.train()

    assert trainer.state.global_step == 2 and len(generated) == 1  # two optimizer steps, one generated batch
    assert rounds == ([16, 16] if algo == "dapo" else [16])  # DAPO refills the whole generated batch
    assert weighted == [16]  # weighted once, over both updates' 2 x 2 prompts x 4 completions
    assert len(trained) == 4  # 2 updates x 2 micro-batches of 4
    # Every micro-batch trains on rows of the one weighted batch, each row exactly once.
    rows = sorted(tuple(row.tolist()) for inputs in trained for row in inputs["advantages"])
    assert rows == sorted(tuple(row.tolist()) for row in generated[0])
    assert all("old_per_token_logps" in inputs for inputs in trained)  # TRL's ratio for the off-policy update
    (logged,) = [row for row in trainer.state.log_history if "loss" in row]
    assert logged["step"] == 2 and "reward" in logged and "weights/weight_mean" in logged
    if algo == "dapo":
        assert logged["dynamic_sampling/rounds"] == 2 and logged["dynamic_sampling/unfilled_frac"] == 0


def test_top_p_reaches_generation(tiny_world, tmp_path):
    train = TrainParams(**SMALL, top_p=0.9)
    trainer = make_trainer(tiny_world, tmp_path, train, "grpo", "uniform", alternating_reward)
    seen = []
    generate = trainer.model.generate

    def recorded_generate(*args, generation_config, **kwargs):
        seen.append(generation_config)
        return generate(*args, generation_config=generation_config, **kwargs)

    trainer.model.generate = recorded_generate
    trainer.model.train()
    row = trainer.train_dataset[0]
    trainer._generate_and_score_completions([row] * trainer.num_generations)
    assert [c.top_p for c in seen] == [0.9] and seen[0].do_sample


class StopAt(TrainerCallback):
    """Ends training after optimizer step `step` (and its checkpoint), as a kill after the save would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resuming_between_generated_batches_matches_an_uninterrupted_run(tiny_world, tmp_path):
    # save_steps is a multiple of updates_per_generation: the checkpoint lies between two generated batches.
    train = TrainParams(**{**SMALL, "max_steps": 4, "save_steps": 2}, micro_batch_size=4, updates_per_generation=2, logging_steps=2)
    uninterrupted = make_trainer(tiny_world, tmp_path / "whole", train, "grpo", "entropy_topk", alternating_reward)
    uninterrupted.train()
    stopped = make_trainer(tiny_world, tmp_path / "resumed", train, "grpo", "entropy_topk", alternating_reward, [StopAt(2)])
    stopped.train()
    resumed = make_trainer(tiny_world, tmp_path / "resumed", train, "grpo", "entropy_topk", alternating_reward)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed/checkpoint-2"))
    assert resumed.state.global_step == 4
    for (name, expected), actual in zip(uninterrupted.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(actual, expected), name


def test_weighting_gets_the_layout_and_a_reproducible_tie_generator(tiny_world, tmp_path):
    train = TrainParams(**SMALL, micro_batch_size=2)
    draws = []
    for run in ("a", "b"):
        trainer = make_trainer(tiny_world, tmp_path / run, train, "grpo", "entropy_topk", alternating_reward)
        weighting = trainer.weighting

        def weigh(signals, advantages, context):
            draws.append((context.layout, torch.rand(4, generator=context.generator)))
            return weighting(signals, advantages, context)

        trainer.weighting = weigh
        trainer.train()
    (layout_a, draw_a), (layout_b, draw_b) = draws
    assert layout_a == layout_b == Layout(micro_batch=2, step=8, group=train.num_generations)  # 8 completions per step, micro-batches of 2
    assert torch.equal(draw_a, draw_b)  # seeded from (seed, step): a rerun breaks ties the same way


def test_a_bf16_checkpoint_trains_fp32_master_weights(tiny_world, tmp_path):
    """Qwen2.5-VL checkpoints are saved, so loaded, in bf16, where lr 1e-6 updates round away (a weight
    of 0.02 moves in steps of 1.2e-4). Through build_trainer, bf16 mixed precision steps AdamW on fp32
    weights, with fp32 state, and one step moves nearly every weight; bf16 is the compute dtype only."""
    data_dir, base_dir = tiny_world
    model, processor = load_policy(base_dir, ModelParams())
    model = model.to(torch.bfloat16)
    # The entropy penalty gives a gradient although the tiny policy earns no reward.
    train = TrainParams(**{**SMALL, "learning_rate": 1e-6}, entropy_penalty=0.5, mixed_precision="bf16")
    trainer = build_trainer(
        model, processor, load_split(data_dir, "train"), data_dir, train, MethodSpec(weighting="uniform"),
        ScoringParams(), get_algorithm("grpo"), 0, tmp_path,
    )  # fmt: skip
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.accelerator.mixed_precision == "bf16"
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert {state["exp_avg"].dtype for state in optimizer.state.values()} == {torch.float32}
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    matrices = [name for name in before if name.startswith("model.language_model.layers.") and before[name].dim() == 2]
    moved = torch.cat([(trainer.model.get_parameter(name) != before[name]).flatten() for name in matrices]).float().mean()
    assert moved > 0.9, f"one step at lr 1e-6 moved only {moved:.1%} of the decoder's weights"


@pytest.mark.parametrize("name", ["qwen3_vl_4b", "qwen3_vl_8b"])
def test_qwen3_vl_params_are_the_forks_controlled_comparison(name, tmp_path):
    """examples/comparison/qwen3_vl_4b/common.sh (211f609) and its README (119b93f), key by key."""
    params = validate(local_copies(merged_params(ROOT / "params/default.yaml", ROOT / f"params/{name}.yaml"), tmp_path), name)
    train = params.train
    config = grpo_config(train, get_algorithm("grpo"), [0.9, 0.1], seed=0, output_dir=tmp_path)
    assert params.model.plain_think_tokens and (params.model.min_pixels, params.model.max_pixels) == (200704, 1003520)
    assert (params.data.source, params.data.validation.source) == ("papo_virl39k", "papo_mmk12")
    assert params.prompt.answer_format == "boxed" and "<think> </think>" in params.prompt.template
    assert train.format_reward == 0.1 and config.reward_weights == [0.9, 0.1]
    assert train.prompts_per_step * train.updates_per_generation == 384 and train.num_generations == 8  # 384 x 8 per step
    assert (config.temperature, config.top_p, config.epsilon, config.epsilon_high) == (1.0, 0.99, 0.2, 0.2)
    assert config.loss_type == "dapo"  # token-level
    assert config.beta == 0.01 and config.entropy_coef == -0.005  # low-var KL 0.01; entropy penalty on the full vocabulary
    assert (config.learning_rate, config.lr_scheduler_type, config.weight_decay) == (1e-6, "constant", 0.01)
    assert config.max_completion_length == 2048 and train.lora is None  # vision tower trained
    assert train.max_steps == 2 * (38870 // 384) * 3  # 2 epochs
    assert train.num_processes == params.resources.train.gpus == (4 if name == "qwen3_vl_4b" else 8)
    assert {params.methods[m].counterfactual for m in ("tor", "pgpo", "vppo")} == {"harmonized_patches"}
    assert params.eval.suite == "comparison" and len(params.eval.benchmarks) == 13
    check_sources(params)  # every adapter and split it names exists


def test_comparison_dapo_baseline_is_dapo_sh(tmp_path):
    """params/comparison_dapo_qwen3_vl_4b.yaml: dapo.sh (119b93f) on the 4B recipe: no KL, clip 0.2 / 0.28, groups
    kept only with mixed accuracy, the shared entropy penalty kept."""
    files = [ROOT / "params/default.yaml", ROOT / "params/qwen3_vl_4b.yaml"]
    base = validate(local_copies(merged_params(*files), tmp_path), "qwen3_vl_4b")
    params = validate(local_copies(merged_params(*files, ROOT / "params/comparison_dapo_qwen3_vl_4b.yaml"), tmp_path), "dapo")
    assert (params.train.algos, params.train.methods, params.train.seeds) == (["dapo"], ["uniform"], [0])
    config = grpo_config(params.train, get_algorithm("dapo"), [0.9, 0.1], seed=0, output_dir=tmp_path)
    assert (config.beta, config.epsilon, config.epsilon_high, config.loss_type) == (0.0, 0.2, 0.28, "dapo")
    assert config.entropy_coef == -0.005 and params.train.overlong_cache is None
    # 0.9 accuracy + 0.1 format: groups of mixed accuracy, all right in mixed format, all wrong in mixed format
    rewards = torch.tensor([0.9, 1.0, 0.0, 0.1, 0.9, 1.0, 1.0, 1.0, 0.0, 0.1, 0.1, 0.0])
    assert mixed_groups(rewards, 4, params.train.dynamic_sampling_tolerance).tolist() == [True, False, False]
    same = {s for s in ("data", "model", "rollouts", "eval") if section_json(params, s) == section_json(base, s)}
    assert same == {"data", "model", "rollouts", "eval"} and params.train.entropy_penalty == base.train.entropy_penalty


def test_comparison_grid_is_the_forks_methods_on_the_qwen3_vl_4b_recipe(tmp_path):
    """params/comparison_qwen3_vl_4b.yaml over the 4B set, loaded as the workflow loads it: the methods of the fork's
    examples/comparison/README.md (119b93f) with its switches, harmonized perturbation, and the random twins."""
    files = [ROOT / "params/default.yaml", ROOT / "params/qwen3_vl_4b.yaml"]
    base = validate(local_copies(merged_params(*files), tmp_path), "qwen3_vl_4b")
    params = validate(local_copies(merged_params(*files, ROOT / "params/comparison_qwen3_vl_4b.yaml"), tmp_path), "comparison")
    check_sources(params)
    assert all(section_json(params, s) == section_json(base, s) for s in ("data", "model", "train", "rollouts", "eval"))  # the 4B recipe
    assert (params.train.algos, params.train.seeds) == (["grpo"], [0])
    recipes = {name: resolve(name, params.methods[name]) for name in params.train.methods}
    methods = {"uniform", "papo", "vppo", "tor", "dvrp", "pgpo", "pepo", "vepo", "cgpo"}
    assert set(recipes) == methods | {"cfpo", "random_vppo", "random_tor", "random_vepo", "random_cgpo"}
    assert {recipes[m].counterfactual for m in methods - {"uniform", "pepo", "cgpo"}} == {"harmonized_patches"}
    assert (recipes["pepo"].counterfactual, recipes["cgpo"].counterfactual) == (None, "gray")  # CGPO keeps its own view
    assert recipes["cfpo"].counterfactual == "salient_value_mean"  # CFPO's in-model counterfactual, as the fork's
    assert params.methods["tor"].weighting == "tor_k3"  # tor.sh sets no visual_sensitivity_metric: T_p by the k3 estimate
    # The README's switches are our defaults, but PAPO's γ (0.01; the paper's GRPO scripts 0.02) and VPPO's TAS pools.
    for name in ("tor", "pgpo", "pepo", "vepo", "cgpo"):
        assert params.methods[name].hparams.items() <= METHODS[params.methods[name].weighting].defaults.items(), name
    assert params.methods["dvrp"].loss.hparams.items() <= loss_named("dvrp").defaults.items()
    assert params.methods["cfpo"].loss.hparams.items() <= loss_named("cfpo").defaults.items()
    assert (params.methods["papo"].loss.hparams["gamma"], loss_named("papo").defaults["gamma"]) == (0.01, 0.02)
    assert params.methods["vppo"].hparams == {"k": 0.4, "beta_min": 0.9, "tas_scope": "global_range", "tas_rows": 4}
