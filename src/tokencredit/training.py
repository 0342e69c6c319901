"""The `train` recipe: one weighted GRPO/DAPO run from a policy, as typed params describe it."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Callable

import datasets
import pandas as pd
import torch
from transformers import TrainerCallback
from trl import GRPOConfig

from tokencredit.algorithms import Algorithm
from tokencredit.dataset import load_image, prompt_messages
from tokencredit.params import MethodSpec, ScoringParams, TrainParams
from tokencredit.graders import accuracy_reward
from tokencredit.rewards import format_reward, overlong_penalty
from tokencredit.trainer import WeightedGRPOTrainer
from tokencredit.weighting import build_weighting, default_counterfactual, required_signals


def grpo_dataset(frame: pd.DataFrame, data_dir: Path) -> datasets.Dataset:
    """TRL's conversational VLM layout: `prompt` messages with an image placeholder and an `image` column."""
    return datasets.Dataset.from_dict(
        {
            "prompt": [prompt_messages(q) for q in frame["question"]],
            "image": [load_image(data_dir, p) for p in frame["image"]],
            "answer": frame["answer"].tolist(),
            "answer_type": frame["answer_type"].tolist(),
            # Option texts let the grader accept an answer given as an option's text (real benchmarks).
            "choices": [list(c) for c in frame["choices"]] if "choices" in frame else [[] for _ in range(len(frame))],
        }
    )


def reward_functions(train: TrainParams, algo: Algorithm) -> tuple[list[Callable], list[float]]:
    funcs: list[Callable] = [accuracy_reward]
    weights = [1.0 - train.format_reward]
    if train.format_reward > 0:
        funcs.append(format_reward)
        weights.append(train.format_reward)
    if algo.overlong_shaping and train.overlong_cache is not None:

        def overlong_reward(completion_ids, **_: Any) -> list[float]:
            return overlong_penalty([len(c) for c in completion_ids], train.max_completion_length, train.overlong_cache)

        funcs.append(overlong_reward)
        weights.append(1.0)
    return funcs, weights


def is_main_process() -> bool:
    """Rank 0, or the only process. `accelerate launch` sets RANK before Python starts, so this needs no process group."""
    return int(os.environ.get("RANK", "0")) == 0


def require_engines(train: TrainParams) -> None:
    """Fail at start, saying what to change, when the params ask for an engine that is not installed."""
    needed = []
    if train.use_vllm:
        needed.append(("vllm", "train.use_vllm: true"))
    if train.distributed.startswith("deepspeed"):
        needed.append(("deepspeed", f"train.distributed: {train.distributed}"))
    for package, setting in needed:
        if importlib.util.find_spec(package) is None:
            raise RuntimeError(f"{setting} needs the `{package}` package, which is not installed here: install it or change that key")


def grpo_config(train: TrainParams, algo: Algorithm, reward_weights: list[float], seed: int, output_dir: Path) -> GRPOConfig:
    """TRL's config for one run. prompts_per_step is the global batch, split evenly over train.num_processes."""
    on_gpu = torch.cuda.is_available()
    return GRPOConfig(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        max_steps=train.max_steps,
        learning_rate=train.learning_rate,
        lr_scheduler_type="constant",
        per_device_train_batch_size=train.prompts_per_step * train.num_generations // train.num_processes,
        gradient_accumulation_steps=1,
        num_generations=train.num_generations,
        max_completion_length=train.max_completion_length,
        temperature=train.temperature,
        loss_type=algo.loss_type,
        scale_rewards=algo.scale_rewards,
        epsilon=algo.epsilon_low,
        epsilon_high=algo.epsilon_high,
        beta=train.beta,
        # VPPO's entropy penalty: TRL subtracts coef·H, so a negative coef adds penalty·H to the loss.
        # TRL's H is the full-vocabulary entropy, whose expectation VPPO's sampled −log π estimates.
        entropy_coef=-train.entropy_penalty,
        reward_weights=reward_weights,
        logging_steps=train.logging_steps,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=1,
        report_to="none",
        use_cpu=not on_gpu,
        bf16=on_gpu,
        gradient_checkpointing=on_gpu,  # saves GPU memory; on CPU it only costs the recomputation
        dataloader_num_workers=0,
        disable_tqdm=True,
        log_completions=False,
        use_vllm=train.use_vllm,
        vllm_mode=train.vllm_mode,
    )


class MetricsLogger(TrainerCallback):
    """Appends every logged step to metrics.jsonl and forwards it to the job's tracker (main process only)."""

    def __init__(self, path: Path, log_fn: Callable[[dict[str, float], int], None] | None = None) -> None:
        self.path = path
        self.log_fn = log_fn

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not logs or not state.is_world_process_zero:
            return
        row = {"step": state.global_step, **{k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.log_fn is not None:
            self.log_fn({k: v for k, v in row.items() if k != "step"}, state.global_step)


def build_trainer(
    model,
    processor,
    train_frame: pd.DataFrame,
    data_dir: Path,
    train: TrainParams,
    method: MethodSpec,
    scoring: ScoringParams,
    algo: Algorithm,
    seed: int,
    checkpoint_dir: Path,
    callbacks: list[TrainerCallback] = (),
) -> WeightedGRPOTrainer:
    require_engines(train)
    funcs, weights = reward_functions(train, algo)
    config = grpo_config(train, algo, weights, seed, checkpoint_dir)
    if config.world_size != train.num_processes:
        raise RuntimeError(
            f"train.num_processes is {train.num_processes} but {config.world_size} process(es) run: "
            f"start the run with `accelerate launch --num_processes {train.num_processes}` (the train rule does)"
        )
    return WeightedGRPOTrainer(
        model=model,
        processing_class=processor,
        args=config,
        train_dataset=grpo_dataset(train_frame, data_dir),
        reward_funcs=funcs,
        callbacks=list(callbacks),
        weighting=build_weighting(method.weighting, **method.hparams),
        needs=required_signals(method.weighting),
        counterfactual=method.counterfactual or default_counterfactual(method.weighting),
        chunk_size=scoring.chunk_size,
        attention_layers=list(scoring.attention_layers),
        dynamic_sampling_tries=train.max_dynamic_sampling_tries if algo.dynamic_sampling else 0,
    )
