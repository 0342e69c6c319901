"""The `train` recipe: one weighted GRPO/DAPO run from a policy, as typed params describe it.

Resuming: a run's checkpoints live in a directory named by the fingerprint of everything they
depend on (`run_fingerprint`), so a rerun with other params or inputs never resumes from them. A
rerun resumes from the newest complete checkpoint (`last_checkpoint`): the Trainer writes
trainer_state.json last, so a checkpoint without a readable one was cut short by a kill.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import datasets
import pandas as pd
import torch
from accelerate.utils import gather_object
from safetensors import safe_open
from transformers import TrainerCallback
from transformers.trainer_pt_utils import safe_globals
from trl import GRPOConfig

from tokencredit.algorithms import Algorithm
from tokencredit.atomic import write_text
from tokencredit.dataset import image_paths, load_image, prompt_messages
from tokencredit.manifest import manifest_path
from tokencredit.models import vision_token_ids
from tokencredit.params import LoraParams, MethodSpec, ScoringParams, TrainParams
from tokencredit.graders import accuracy_reward
from tokencredit.repeated_images import encode_repeated_images_once
from tokencredit.rewards import DEFAULT_ANSWER_FORMAT, format_reward, overlong_penalty
from tokencredit.recipe import Recipe, resolve
from tokencredit.reward_sets import RewardSet
from tokencredit.trainer import WeightedGRPOTrainer
from tokencredit.vllm_settings import check_processor_bounds, sampling_kwargs

log = logging.getLogger(__name__)
CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def grpo_dataset(frame: pd.DataFrame, data_dir: Path, processor: Any = None, cached_images: int = 64) -> datasets.Dataset:
    """TRL's conversational VLM layout: `prompt` messages with one placeholder per image, and `images`.

    The table holds the images' paths: each is decoded when its row is read and, given the policy's
    processor, resized once to the size the processor gives it (dataset.fit_to_processor), never
    stored (datasets would re-encode every image as PNG, in every process). TRL reads a prompt's row
    once per completion of its group, so the last `cached_images` images are kept.
    """
    paths = image_paths(frame)
    table = datasets.Dataset.from_dict(
        {
            "prompt": [prompt_messages(q, len(own)) for q, own in zip(frame["question"], paths)],
            "image_paths": paths,
            "answer": frame["answer"].tolist(),
            "answer_type": frame["answer_type"].tolist(),
            # Option texts let the grader accept an answer given as an option's text (real benchmarks).
            "choices": [list(c) for c in frame["choices"]] if "choices" in frame else [[] for _ in range(len(frame))],
            # The marker the prompt asks for, which the accuracy and format rewards read (synthetic task: tags).
            "answer_format": list(frame["answer_format"]) if "answer_format" in frame else [DEFAULT_ANSWER_FORMAT] * len(frame),
            # The synthetic task's question family: GRIT's counting bonus reads it (reward_sets/grit.py).
            **({"family": frame["family"].tolist()} if "family" in frame else {}),
            # VAPO's claim probes read the question (to rebuild the prompt) and the image's claims (reward_sets/vapo.py).
            "question": frame["question"].tolist(),
            **({"claims": frame["claims"].tolist()} if "claims" in frame else {}),
            # The synthetic task's one correct response: the `on_target` label of oracle_first_error reads it.
            **({"target": frame["target"].tolist()} if "target" in frame else {}),
        }
    )
    load = functools.lru_cache(maxsize=cached_images)(lambda rel: load_image(data_dir, rel, processor))

    def decode(rows: dict[str, list]) -> dict[str, list]:
        rows["images"] = [[load(rel) for rel in own] for own in rows.pop("image_paths")]
        return rows

    return table.with_transform(decode)


def reward_functions(train: TrainParams, algo: Algorithm, reward_set: RewardSet | None = None) -> tuple[list[Callable], list[float]]:
    """The task's reward (accuracy, plus train.format_reward), or the method's reward set in its place;
    DAPO's overlong shaping on top of either."""
    if reward_set is not None:
        funcs, weights = list(reward_set.funcs), list(reward_set.weights)
    else:
        funcs, weights = [accuracy_reward], [1.0 - train.format_reward]
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


def training_precision(train: TrainParams) -> str:
    """train.mixed_precision resolved: "bf16" or "no" (auto: bf16 where a GPU is visible)."""
    if train.mixed_precision == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return train.mixed_precision


def compute_dtype(train: TrainParams) -> torch.dtype | None:
    """The dtype the trained policy is saved in: bf16 after bf16 mixed precision, else as its weights are (None)."""
    return torch.bfloat16 if training_precision(train) == "bf16" else None


def check_launch(train: TrainParams) -> None:
    """Before any work: the engines are installed, and the processes `accelerate launch` started and the
    precision its config asks for agree with the params (accelerate exports both to every process)."""
    require_engines(train)
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes != train.num_processes:
        raise RuntimeError(
            f"train.num_processes is {train.num_processes} but {processes} process(es) run: start the run with "
            f"`accelerate launch --num_processes {train.num_processes}` (the train rule does)"
        )
    # The shipped configs leave precision to the params ("no", accelerate's default); a config that names
    # another would win silently (transformers reads ACCELERATE_MIXED_PRECISION when bf16 is off).
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launched not in ("no", training_precision(train)):
        raise RuntimeError(
            f"train.mixed_precision is {train.mixed_precision!r} ({training_precision(train)} here) but accelerate was launched "
            f"with mixed_precision {launched!r} (its config file or --mixed_precision): set train.mixed_precision: {launched} "
            "or leave precision out of the accelerate config"
        )


def check_replicas_agree(policy, accelerator) -> str:
    """The sha256 of `policy`'s whole state dict, after checking that every process holds the same one
    (enter on every process, with the policy gathered: it is collective). Differing replicas mean the
    processes trained apart (a desynchronised step): the saved policy would be one of several."""
    digest = hashlib.sha256()
    for name, tensor in sorted(policy.state_dict().items()):
        digest.update(name.encode())
        # A copy: numpy would pin the tensor's storage, which FSDP frees (resizes) when it reshards.
        digest.update(tensor.detach().to("cpu", copy=True).reshape(-1).view(torch.uint8).numpy().tobytes())
    mine = digest.hexdigest()
    digests = gather_object([mine]) if accelerator.num_processes > 1 else [mine]
    log.info("process %d: state dict sha256 %s", accelerator.process_index, mine)
    if len(set(digests)) > 1:
        raise RuntimeError(f"the processes hold different weights after training (state dict sha256 per process: {digests})")
    return mine


def fp32_master_weights(model, train: TrainParams):
    """The model with fp32 weights where the optimizer steps on the model's own parameters.

    A checkpoint saved in bf16 loads in bf16, and AdamW on bf16 weights rounds lr 1e-6 updates away
    (0.02 + 1e-6 == 0.02 in bf16): so single-process and DDP runs train fp32 weights, and bf16
    mixed precision computes in bf16 under autocast, as accelerate and TRL intend (the Trainer's bf16).
    Left as they are: FSDP under bf16 mixed precision (accelerate upcasts each process's shard after
    wrapping, so the full model is never held in fp32), DeepSpeed under bf16 (its optimizer keeps fp32
    copies), and LoRA (only the adapter steps, and peft creates it in fp32).
    """
    engine_keeps_fp32 = training_precision(train) == "bf16" and train.distributed != "ddp"
    if train.lora is not None or engine_keeps_fp32:
        return model
    return model.float()


def grpo_config(
    train: TrainParams, algo: Algorithm, reward_weights: list[float], seed: int, output_dir: Path, suppress_tokens: list[int] = ()
) -> GRPOConfig:
    """TRL's config for one run. prompts_per_step is the global batch of one optimizer step, split evenly
    over train.num_processes and, within a process, into micro-batches whose gradients accumulate.

    TRL generates once every `steps_per_generation` micro-steps, for that many micro-batches per
    process: updates_per_generation optimizer steps of gradient_accumulation_steps micro-batches each.
    Its generation batch, prompts_per_step x num_generations x updates_per_generation completions,
    thus holds whole prompt groups, as TRL requires.

    `suppress_tokens`: never sampled (vision placeholders; TRL itself blocks only the image token).
    """
    on_gpu = torch.cuda.is_available()
    bf16 = training_precision(train) == "bf16"
    micro_batch = train.micro_batch_size or train.completions_per_process
    accumulation = train.completions_per_process // micro_batch  # TrainParams checks that it divides
    return GRPOConfig(
        output_dir=str(output_dir),
        seed=seed,
        data_seed=seed,
        max_steps=train.max_steps,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        lr_scheduler_type="constant",
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation * train.updates_per_generation,
        num_generations=train.num_generations,
        max_completion_length=train.max_completion_length,
        temperature=train.temperature,
        top_p=train.top_p,
        loss_type=train.loss_type or algo.loss_type,
        scale_rewards=algo.scale_rewards,
        epsilon=algo.epsilon_low,
        epsilon_high=algo.epsilon_high,
        importance_sampling_level=algo.importance_sampling_level,
        beta=train.beta,
        # The full-vocabulary entropy penalty is TRL's: it subtracts coef·H, so a negative coef adds penalty·H.
        # The sampled form (VPPO's) is WeightedGRPOTrainer's.
        entropy_coef=-train.entropy_penalty if train.entropy_penalty_form == "full_vocabulary" else 0.0,
        # EasyR1's dual-clip caps a negative advantage's loss at −C·A; TRL's `delta` caps the ratio at C for
        # every token, which is the same loss when C > 1 + epsilon_high (positive advantages clip below C).
        delta=dual_clip(train, algo),
        reward_weights=reward_weights,
        logging_steps=train.logging_steps,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=1,
        report_to="none",
        use_cpu=not on_gpu,
        bf16=bf16,  # autocast over the fp32 weights fp32_master_weights keeps
        gradient_checkpointing=on_gpu,  # saves GPU memory; on CPU it only costs the recomputation
        dataloader_num_workers=0,
        disable_tqdm=True,
        log_completions=False,
        use_vllm=train.use_vllm,
        vllm_mode=train.vllm_mode,
        vllm_max_model_length=train.max_prompt_length + train.max_completion_length if train.use_vllm else None,
        generation_kwargs=generation_kwargs(train, list(suppress_tokens)),
    )


def generation_kwargs(train: TrainParams, blocked: list[int]) -> dict[str, Any] | None:
    """What TRL adds to its generation settings: transformers' `suppress_tokens`, or with vLLM only fields
    of its SamplingParams, the blocked tokens through `logit_bias` (tokencredit.vllm_settings)."""
    if train.use_vllm:
        return sampling_kwargs(blocked, train.vllm_sampling)
    return {"suppress_tokens": blocked} if blocked else None


def dual_clip(train: TrainParams, algo: Algorithm) -> float | None:
    if train.dual_clip is not None and train.dual_clip <= 1 + algo.epsilon_high:
        raise ValueError(f"train.dual_clip ({train.dual_clip}) must exceed 1 + epsilon_high ({1 + algo.epsilon_high}) of {algo.loss_type}")
    return train.dual_clip


# peft's exclude_modules regex (matched against full module names): Qwen2-VL-style models keep the
# vision tower and its merger under `visual` (model.visual.blocks.*, model.visual.merger.*);
# InternVL under `vision_tower` and `multi_modal_projector`.
VISION_TOWER = r".*\b(visual|vision_tower|multi_modal_projector)\b.*"


def lora_config(lora: LoraParams):
    """peft's LoraConfig for train.lora; TRL wraps the policy with it (GRPOTrainer's peft_config)."""
    from peft import LoraConfig  # only LoRA runs need peft

    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        exclude_modules=VISION_TOWER if lora.freeze_vision_tower else None,
        task_type="CAUSAL_LM",
    )


class MetricsLogger(TrainerCallback):
    """Appends every logged step to metrics.jsonl and forwards it to the job's tracker (main process only).

    The end-of-training summary (train_runtime, train_loss) is left out: after a resume it would
    cover only the last stretch, and the file holds one row per logged step.
    """

    def __init__(self, path: Path, log_fn: Callable[[dict[str, float], int], None] | None = None) -> None:
        self.path = path
        self.log_fn = log_fn

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not logs or "train_runtime" in logs or not state.is_world_process_zero:
            return
        row = {"step": state.global_step, **{k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self._forward(row)

    def resume(self, step: int) -> None:
        """Keep the rows up to `step` (the checkpoint resumed from; 0: none) and forward them again.

        Rows after the checkpoint are logged again by the resumed run; the new tracking run gets the
        kept ones too, so that it holds every step. A last line cut short by a kill is dropped.
        """
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        rows = []
        for number, line in enumerate(lines, start=1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines):
                    raise ValueError(f"{self.path}:{number}: not JSON; fix or delete the line (the file is kept as it is)") from None
        kept = [row for row in rows if row["step"] <= step]
        write_text(self.path, "".join(json.dumps(row) + "\n" for row in kept))
        for row in kept:
            self._forward(row)

    def _forward(self, row: dict[str, float]) -> None:
        if self.log_fn is not None:
            self.log_fn({k: v for k, v in row.items() if k != "step"}, int(row["step"]))


# -- resuming ---------------------------------------------------------------------------------------


def run_fingerprint(settings: dict[str, Any], init: Path, train_file: Path) -> str:
    """Hex digest of what a run's checkpoints depend on: its settings, starting policy and train split.

    The policy counts by its content manifest when it has one (pipeline-built models), else by its
    files' names, sizes and modification times: hashing a real checkpoint's gigabytes at every
    start would take minutes. The split's images are written with its parquet, which counts by content.
    """
    manifest = manifest_path(init)
    if manifest.is_file():
        policy = manifest.read_text()
    else:
        files = sorted(p for p in Path(init).rglob("*") if p.is_file())
        policy = json.dumps([(str(p.relative_to(init)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(policy.encode())
    digest.update(hashlib.sha256(Path(train_file).read_bytes()).digest())
    return digest.hexdigest()[:16]


def checkpoint_step(checkpoint: Path) -> int:
    return int(CHECKPOINT.fullmatch(checkpoint.name)[1])


def is_complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last: without a readable one the save was cut short."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return state.get("global_step") == checkpoint_step(checkpoint)


def last_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint-N in `directory`, or None."""
    found = [p for p in Path(directory).glob("checkpoint-*") if p.is_dir() and CHECKPOINT.fullmatch(p.name)]
    complete = [p for p in found if is_complete(p)]
    return max(complete, key=checkpoint_step, default=None)


def discard_stale_checkpoints(run_dir: Path, current: Path) -> None:
    """Remove what a resume must not use: other fingerprints' directories and cut-short checkpoints.

    Only the main process calls this; other processes choose the same checkpoint with
    last_checkpoint, which passes over cut-short ones whether or not they are gone yet.
    """
    for path in sorted(Path(run_dir).glob("*")):
        if path.is_dir() and path != current:
            log.warning("discarding %s: checkpoints of other params or inputs", path)
            shutil.rmtree(path)
    for path in sorted(Path(current).glob("checkpoint-*")):
        if path.is_dir() and not is_complete(path):
            log.warning("discarding %s: its save was cut short", path)
            shutil.rmtree(path)


def check_checkpoint(checkpoint: Path, required: tuple[str, ...] = ()) -> None:
    """Raise ValueError naming the checkpoint and file when one the Trainer reads back is missing or unreadable.

    Top-level tensors are opened lazily (safetensors headers, torch.load with mmap and
    weights_only, as the Trainer loads them), so this costs little even for a large model.
    """
    advice = f"delete {checkpoint} to resume from the start (or from an earlier checkpoint)"
    for name in required:
        if not (checkpoint / name).is_file():
            raise ValueError(f"checkpoint {checkpoint} lacks {name}: {advice}")
    for path in sorted(p for p in checkpoint.iterdir() if p.suffix in (".safetensors", ".pt", ".pth")):
        try:
            if path.suffix == ".safetensors":
                with safe_open(path, "pt") as f:
                    f.keys()
            else:
                with safe_globals():  # the numpy types of rng_state.pth, as the Trainer allows them
                    torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:
            raise ValueError(f"checkpoint {checkpoint} is damaged: {path.name}: {type(err).__name__}: {err}; {advice}") from err


def check_role_labels(recipe: Recipe, train_frame: pd.DataFrame, data_dir: Path) -> None:
    """A method that reads ground-truth labels (oracle_roles, oracle_first_error) trains only on data that has them."""
    for label, column in (("role", "role_spans"), ("on_target", "target")):
        if label in recipe.needs and column not in train_frame.columns:
            raise ValueError(
                f"weighting {recipe.spec.weighting!r} reads the ground-truth label {label!r}, but the training data "
                f"{data_dir / 'train.parquet'} has none (no {column} column): only the synthetic task (data.source: synthetic) has it"
            )


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
    method_name: str = "method",
    generation_chunk: int | None = None,
) -> WeightedGRPOTrainer:
    check_launch(train)
    recipe = resolve(method_name, method)
    check_role_labels(recipe, train_frame, data_dir)
    if train.use_vllm:
        check_processor_bounds(model.name_or_path, processor.image_processor)
    model = fp32_master_weights(model, train)
    funcs, weights = reward_functions(train, algo, recipe.reward)
    config = grpo_config(train, algo, weights, seed, checkpoint_dir, suppress_tokens=vision_token_ids(model))
    trainer = WeightedGRPOTrainer(
        model=model,
        processing_class=processor,
        args=config,
        train_dataset=grpo_dataset(train_frame, data_dir, processor),
        reward_funcs=funcs,
        callbacks=list(callbacks),
        recipe=recipe,
        chunk_size=scoring.chunk_size,
        attention_layers=list(scoring.attention_layers),
        entropy_top_p=(scoring.entropy_top_p, scoring.renormalize_top_p),
        dynamic_sampling_tries=train.max_dynamic_sampling_tries if algo.dynamic_sampling else 0,
        dynamic_sampling_tolerance=train.dynamic_sampling_tolerance,
        entropy_penalty=train.entropy_penalty if train.entropy_penalty_form == "sampled" else 0.0,
        signals_from_loss=train.signals_from_loss,
        reuse_scoring_logps=train.reuse_scoring_logps,
        generation_chunk=generation_chunk,
        peft_config=lora_config(train.lora) if train.lora else None,
    )
    # TRL builds the KL reference model itself; the policy got the same hooks from load_policy.
    for policy in (trainer.model, trainer.ref_model):
        if policy is not None:
            encode_repeated_images_once(trainer.accelerator.unwrap_model(policy))
    return trainer
