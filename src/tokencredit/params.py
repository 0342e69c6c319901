"""Typed, validated parameters: one pydantic model per params section.

Every stage receives only its own section, so a change to one section reruns only the jobs that
read it. `load_params` is the single entry point: YAML files and `snakemake --config` overrides go
through the same validation, and any error names the key path and the reason before a job runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


# Marks keys that choose WHICH jobs exist (the grid), not how one job runs: they are left out of the
# section a rule receives, so adding a seed or a method reruns none of the existing jobs.
GRID = {"grid": True}
BENCHMARK_NAME = re.compile(r"[A-Za-z0-9_]+")


class Section(BaseModel):
    """Base for every params section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_local_copy(source: str, path: str | None) -> None:
    """A real dataset's local copy exists (tokencredit.sources.check_sources checks its adapter and split)."""
    if path is None:
        raise ValueError(f"dataset {source!r} needs `path`, the local copy of its release")
    if not Path(path).is_dir():
        raise ValueError(f"local copy {path!r} of dataset {source!r} does not exist or is not a directory")


class DataParams(Section):
    seed: int = Field(0, description="Seed of the synthetic generator; same seed, same bytes.")
    image_size: int = Field(84, ge=28, description="Side of the square synthetic images, in pixels.")
    families: list[Literal["count_color", "count_shape", "exists", "compare", "sum_digits"]] = Field(
        default_factory=lambda: ["count_color"],
        min_length=1,
        description="Question families of the synthetic task.",
    )
    min_objects: int = Field(1, ge=1, description="Fewest shapes in an in-distribution image.")
    max_objects: int = Field(6, ge=1, description="Most shapes in an in-distribution image.")
    ood_min_objects: int = Field(7, ge=1, description="Fewest shapes in an out-of-distribution image.")
    ood_max_objects: int = Field(9, ge=1, description="Most shapes in an out-of-distribution image.")
    filler_words: int = Field(
        0,
        ge=0,
        le=3,
        description="Glue words before each object of the listing (format role): a random opener, then 'i see'. "
        "Makes perception a minority of longer responses, as in the papers' rollouts; a testbed under study, not yet "
        "shown to let the perception oracle beat uniform (docs/experiment.md, issue 24); 0: none.",
    )
    noise_words: int = Field(
        0,
        ge=0,
        le=16,
        description="Words opening each chain of thought, drawn uniformly from 8 (role noise): entropy that nothing "
        "depends on, in a fixed number, so that credit on them is pure gradient noise. At 4, dropping that credit "
        "(oracle_roles with noise_weight 0) did not beat uniform (docs/experiment.md, issue 24); 0: none.",
    )
    target_style: Literal["plain", "grounded"] = Field(
        "plain",
        description="Chain of thought of the targets. plain: '<think>listing. derivation</think><answer>..</answer>'; "
        "grounded: GRIT's grounded reasoning (arXiv 2505.15879): each object the question counts is followed by its box "
        "[x1,y1,x2,y2] in pixels and the derivation moves into <rethink>..</rethink> (params/grit.yaml).",
    )
    claims_per_image: int = Field(
        0,
        ge=0,
        le=40,
        multiple_of=2,
        description="VAPO's visual claims (arXiv 2509.25848: 20 per image, half true): statements about each synthetic "
        "scene in a `claims` column, which its claim probes ask the policy (params/vapo.yaml); 0: no column.",
    )
    n_train: int = Field(4000, ge=1, description="Examples in the train split.")
    n_validation: int = Field(200, ge=1, description="Examples in the validation split.")
    n_test: int = Field(300, ge=1, description="Examples in the in-distribution test split.")
    n_test_ood: int = Field(300, ge=1, description="Examples in the out-of-distribution test split.")
    source: str = Field(
        "synthetic",
        description="'synthetic' (the built-in task, all keys above) or a training-set adapter of tokencredit.sources "
        "(geometry3k, virl39k, mmk12) reading the local copy at `path` into train and validation splits; without a "
        "published validation split, n_validation train rows (chosen with `seed`) are held out.",
    )
    path: str | None = Field(None, description="Local copy of the published training set (its release directory); required unless source is synthetic.")
    limit: int | None = Field(None, ge=1, description="Real training set: keep only its first N train rows (None: all).")
    validation: BenchmarkSpec | None = Field(
        None, description="Real training set: a published split read as the validation split (e.g. the fork's MMK12 "
        "test), instead of the release's own validation split or n_validation held-out train rows.",
    )
    on_bad_row: Literal["error", "skip"] = Field(
        "error", description="Real training set: a malformed row (missing field, broken image, unknown answer type) "
        "stops with an error naming its file, row and field, or is skipped, counted and logged.",
    )

    @model_validator(mode="after")
    def _ranges(self) -> DataParams:
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) > max_objects ({self.max_objects})")
        if self.ood_min_objects > self.ood_max_objects:
            raise ValueError(f"ood_min_objects ({self.ood_min_objects}) > ood_max_objects ({self.ood_max_objects})")
        return self

    @model_validator(mode="after")
    def _real_source(self) -> DataParams:
        if self.source == "synthetic":
            if self.path is not None:
                raise ValueError(f"path {self.path!r} is set, but source 'synthetic' reads no files")
            return self
        check_local_copy(self.source, self.path)
        return self


class ModelParams(Section):
    path: str | None = Field(
        None,
        description="Local directory of a real Hugging Face checkpoint (e.g. Qwen2.5-VL-3B-Instruct). "
        "When set, build_base is skipped and the tiny model below is not built.",
    )
    family: str = Field(
        "auto",
        description="Model family (tokencredit.families): qwen2_5_vl, qwen3_vl, qwen3_5 or internvl. 'auto': a checkpoint's "
        "family from its config's model_type; the tiny model built without `path` is then Qwen2.5-VL.",
    )
    hidden_size: int = Field(128, ge=8, description="Tiny LLM hidden size.")
    num_layers: int = Field(4, ge=1, description="Tiny LLM decoder layers.")
    num_heads: int = Field(4, ge=1, description="Tiny LLM attention heads.")
    num_kv_heads: int = Field(2, ge=1, description="Tiny LLM key/value heads.")
    intermediate_size: int = Field(256, ge=8, description="Tiny LLM MLP width.")
    vision_depth: int = Field(2, ge=1, description="Tiny vision tower depth.")
    vision_hidden_size: int = Field(64, ge=8, description="Tiny vision tower width.")
    vocab_size: int = Field(512, ge=64, description="Target vocabulary of the BPE tokenizer trained on the synthetic text.")
    min_pixels: int = Field(84 * 84, ge=1, description="Image processor lower pixel bound.")
    max_pixels: int = Field(84 * 84, ge=1, description="Image processor upper pixel bound.")
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = Field(
        "sdpa",
        description="Attention kernel of every job (generation, rollouts, scoring, training). No method needs eager: "
        "attn_image is recomputed from the chosen layers' own q and k (signals.image_attention_mass). "
        "flash_attention_2 needs the flash-attn package.",
    )
    generation_chunk: int | None = Field(
        None,
        ge=1,
        description="Completions (rows) per generate() call, in training's generation (each process's rows) and in the "
        "rollouts step: one call holds the KV cache of all its rows, so this bounds it. None: every "
        "row in one call. Sampled completions depend on it (the random draws split differently); vLLM batches by itself.",
    )
    trust_remote_code: bool = Field(False, description="Allow code from a checkpoint directory. Off unless you trust it.")
    plain_think_tokens: bool = Field(
        False, description="Tokenize <think> and </think> as plain text instead of as the checkpoint's added tokens, which "
        "Qwen3-VL Instruct checkpoints never trained (the fork's controlled comparison; tokencredit.plain_think).",
    )
    seed: int = Field(0, description="Seed of the tiny model's initialisation.")

    @model_validator(mode="after")
    def _shapes(self) -> ModelParams:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) is not divisible by num_heads ({self.num_heads})")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) is not divisible by num_kv_heads ({self.num_kv_heads})")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) > max_pixels ({self.max_pixels})")
        if self.path is not None and not Path(self.path).is_dir():
            raise ValueError(f"local checkpoint directory {self.path!r} does not exist")
        return self


class SFTParams(Section):
    max_steps: int = Field(450, ge=1, description="Optimizer steps (all of them unless target_accuracy stops earlier).")
    target_accuracy: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Stop at the first validation check whose greedy accuracy reaches this. None (the default): run "
        "max_steps, a count that float rounding across machines cannot move (issue 24: a threshold checked every "
        "eval_every steps stopped at step 450 on one machine and 500 on another).",
    )
    batch_size: int = Field(32, ge=1, description="Examples per optimizer step.")
    learning_rate: float = Field(5e-4, gt=0, description="AdamW learning rate.")
    eval_every: int = Field(25, ge=1, description="Steps between validation checks.")
    eval_examples: int = Field(200, ge=1, description="Validation examples used by each check.")
    text_only_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of training prompts shown without their image, so that the policy answers sensibly "
        "(a guess) when the image is removed instead of collapsing; image-removed counterfactuals stay in distribution.",
    )
    claim_probe_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of training rows turned into VAPO claim probes (data.claims_per_image): the target cut at a "
        "punctuation mark, a claim asked, the loss on the one answer token. Qwen answers such questions untaught; the "
        "tiny model must learn to, else every probe is chance and VAPO's perception reward 0. 0: none.",
    )
    seed: int = Field(0, description="Seed of data order and initial state.")


class ComponentSpec(Section):
    """A registered component of a method (an auxiliary loss, a rollout transform, a reward set) and its hyperparameters."""

    name: str = Field(description="Name in the component's registry (tokencredit.losses, tokencredit.transforms, tokencredit.reward_sets).")
    hparams: dict[str, float | int | bool | str] = Field(default_factory=dict, description="Keyword overrides of the component's defaults.")


class MethodSpec(Section):
    """One entry of the method grid: a recipe of registered components (tokencredit.recipe), each with
    its hyperparameters: token weights, an auxiliary loss, a rollout transform, a reward set, a counterfactual input.

    Named variants (e.g. `tor_reasoning_only`) are specs with the same components and other
    hyperparameters: ablations are parameter settings, not copies of code.
    """

    weighting: str = Field("uniform", description="Name in the weighting registry (tokencredit.weighting); uniform: no token weights.")
    hparams: dict[str, float | int | bool | str] = Field(default_factory=dict, description="Keyword overrides of the method's defaults.")
    counterfactual: Literal[
        "drop_image", "mask_visual_attention", "patch_blackening", "gaussian_noise", "blur", "gray", "pixel_value_noise",
        "harmonized_patches", "salient_value_mean",
    ] | None = Field(None, description="Counterfactual input for methods that need logp_cf; None: the method's default.")
    loss: ComponentSpec | None = Field(None, description="Auxiliary loss added to TRL's policy loss (tokencredit.losses), e.g. {name: papo}.")
    transform: ComponentSpec | None = Field(
        None, description="Rollout transform of the generation inputs (tokencredit.transforms), e.g. {name: noisy_rollout}; the update sees the clean inputs."
    )
    reward: ComponentSpec | None = Field(
        None, description="Reward set replacing the task's reward in training (tokencredit.reward_sets), e.g. {name: grit}; evaluation still grades with the task's grader."
    )


# ToR's selection at its defaults, measured in training from the default SFT model (docs/experiment.md;
# 10 steps of 16 x 4): the share of tokens it weights (weights/frac_selected 0.41, 0.40-0.43 per step)
# and their mean weight (weight_mean 0.357 / 0.41 = 0.86): its random twin's ratio and weight.
TOR_SELECTED, TOR_SELECTED_WEIGHT = 0.41, 0.86


def _default_methods() -> dict[str, MethodSpec]:
    """Every method of METHODS.md at its authors' defaults, plus the ablations the papers name."""
    specs = {
        "uniform": ("uniform", {}),
        "entropy_topk": ("entropy_topk", {}),
        "tor": ("tor", {}),
        "tor_reasoning_only": ("tor", {"gamma_p": 0.0}),
        "tor_perception_only": ("tor", {"rho_r": 0.0}),  # gamma_p on ALL of T_p; gamma_r = 0 would drop T_p ∩ T_r
        "tor_top_p": ("tor_top_p", {}),  # Eq. 5 as the fork reads it: T_r by the entropy of the top-p 0.95 set (issue 22)
        "tor_k3": ("tor_k3", {}),  # the fork's comparison: T_p by the k3 estimate, its default metric (issue 22)
        "vppo": ("vppo", {}),
        "pgpo": ("pgpo", {}),
        "pgpo_suppression_only": ("pgpo", {"tau": 1.0}),
        "pgpo_boosting_only": ("pgpo", {"tau": 0.0}),
        "pgpo_no_norm": ("pgpo", {"normalize": False}),
        "pgpo_authorcode": ("pgpo", {"tau_quantile": True, "floor": 0.1, "normalize": False}),  # authors' dev code, pgpo.py
        "atrl": ("atrl", {}),
        "atrl_low_only": ("atrl", {"low_connectivity_only": True}),
        # The zoo (issue 22): weightings at their authors' defaults (weighting/<name>.py cites each).
        "vepo": ("vepo", {}),
        "vepo_no_entropy_gate": ("vepo", {"entropy_gate": False}),  # their score type "E" ablation
        "pepo": ("pepo", {}),
        "vgpo": ("vgpo", {}),
        "cgpo": ("cgpo", {}),
        "clip_cov": ("clip_cov", {}),  # a sparse control with no visual signal
        # Controls (no paper): each sparse method's random twin at its selection ratio and weight mass,
        # and the ground-truth roles' ceiling (weighting/random_tokens.py, weighting/oracle_roles.py).
        "random_entropy_topk": ("random_tokens", {"ratio": 0.2, "normalize": True}),
        "random_tor": ("random_tokens", {"ratio": TOR_SELECTED, "selected_weight": TOR_SELECTED_WEIGHT}),
        "random_vppo": ("random_tokens", {"ratio": 0.4, "per_response": True}),
        "random_atrl": ("random_tokens", {"ratio": 0.15, "selected_weight": 1.5, "other_weight": 0.5, "per_response": True, "normalize": True}),
        "random_vepo": ("random_tokens", {"ratio": 0.2, "per_response": True, "normalize": True}),
        "random_clip_cov": ("random_tokens", {"ratio": 1 - 0.0002}),  # drops floor(2e-4 N); Clip-Cov at least 1
        "random_cgpo": ("random_tokens", {"ratio": TOR_SELECTED}),  # T_r ∪ T_p as ToR's (same ρs); weights ≈ 1 (α averages 1)
        "oracle_perception": ("oracle_roles", {}),
        "oracle_reasoning": ("oracle_roles", {"perception_weight": 0.0, "format_weight": 0.0, "normalize": False}),
        # The testbed's positive control: ground-truth process credit and its twin (weighting/oracle_first_error.py).
        "oracle_first_error": ("oracle_first_error", {}),
        "random_first_error": ("random_first_error", {}),
    }
    # Methods of other kinds (issue 22): an auxiliary loss, a rollout transform or a reward set, on uniform weights.
    recipes = {
        "papo": {"loss": {"name": "papo"}},  # the 3B GRPO scripts: gamma 0.02, no double entropy (losses/papo.py)
        "papo_double_entropy": {"loss": {"name": "papo", "hparams": {"ori_entropy_coef": 0.05, "aug_entropy_coef": 0.05}}},  # 7B GRPO
        "papo_dapo": {"loss": {"name": "papo", "hparams": {"gamma": 0.01, "ori_entropy_coef": 0.03, "aug_entropy_coef": 0.03}}},  # DAPO's
        "dvrp": {"loss": {"name": "dvrp"}},  # the fork's version (no official code; losses/dvrp.py)
        "cfpo": {"loss": {"name": "cfpo"}},  # CFPO-G's script: gamma 0.02, no entropy terms (losses/cfpo.py)
        "cfpo_dapo": {"loss": {"name": "cfpo", "hparams": {"gamma": 0.01, "ori_entropy_coef": 0.03}}},  # CFPO-D's
        "kl_cov": {"loss": {"name": "kl_cov"}},
        "random_kl_cov": {"loss": {"name": "kl_cov", "hparams": {"random": True}}},  # its random twin
        "noisy_rollout": {"transform": {"name": "noisy_rollout"}},
        "grit": {"reward": {"name": "grit"}},  # the released GRIT rewards (params/grit.yaml; needs grounded targets)
        "grit_fork": {"reward": {"name": "grit_fork"}},  # the fork's comparison GRIT (reward_sets/grit_fork.py; real data)
        "vapo": {"reward": {"name": "vapo"}},  # VAPO's claim probes (reward_sets/vapo.py; params/vapo.yaml: claims, probe SFT)
    }
    built = {name: MethodSpec(weighting=w, hparams=h) for name, (w, h) in specs.items()}
    return {**built, **{name: MethodSpec.model_validate(recipe) for name, recipe in recipes.items()}}


class LoraParams(Section):
    """LoRA (peft) in place of full fine-tuning: only the adapter trains; the base weights stay frozen.

    Defaults follow verl/EasyR1's Qwen2.5-VL LoRA examples (rank 64, alpha 32, all-linear, vision
    tower excluded, as vLLM serves no LoRA on the vision tower of Qwen-VL models).
    """

    rank: int = Field(64, ge=1, description="Rank r of the adapter matrices.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha: the adapter's update is scaled by alpha / rank.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter's input (peft's lora_dropout).")
    target_modules: Literal["all-linear"] | list[str] = Field(
        "all-linear", description="Linear layers that get an adapter: module names or name suffixes (e.g. [q_proj, v_proj]), "
        "or 'all-linear' (peft: every linear layer but the output layer). lm_head cannot be adapted: the loss reads its weight directly.",
    )
    freeze_vision_tower: bool = Field(
        True, description="No adapter inside the vision tower (modules under `visual`; InternVL: `vision_tower`, `multi_modal_projector`): it stays as the base has it. "
        "False: target_modules matching there get adapters too.",
    )

    @field_validator("target_modules")
    @classmethod
    def _not_lm_head(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and (not value or "lm_head" in value):
            raise ValueError("must be non-empty and must not name lm_head: TRL computes log-probs from lm_head's weight, so its adapter would never train")
        return value


class TrainParams(Section):
    algos: list[Literal["grpo", "dapo", "dr_grpo", "cispo", "sapo", "gspo"]] = Field(
        default_factory=lambda: ["grpo"], min_length=1, description="Base algorithms of the grid.", json_schema_extra=GRID
    )
    methods: list[str] = Field(
        default_factory=lambda: ["uniform"], min_length=1, description="Keys of `methods` that the grid trains.", json_schema_extra=GRID
    )
    seeds: list[int] = Field(default_factory=lambda: [0, 1], min_length=1, description="Seeds of the grid.", json_schema_extra=GRID)
    max_steps: int = Field(30, ge=1, description="GRPO optimizer steps per run.")
    learning_rate: float = Field(1e-6, gt=0, description="AdamW learning rate (1e-6 in the papers' 3B/7B runs).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (TRL's default 0; EasyR1's, which the papers train with: 0.01).")
    prompts_per_step: int = Field(8, ge=1, description="Distinct prompts per optimizer step (the papers' update or global batch).")
    num_generations: int = Field(4, ge=2, description="Completions sampled per prompt (G).")
    micro_batch_size: int | None = Field(
        None, ge=1, description="Completions per process in one forward and backward (policy loss and token scoring); an "
        "optimizer step accumulates the gradients of its prompts_per_step x num_generations / num_processes completions per "
        "process over micro-batches of this size, which must divide that number. None: all of them in one forward.",
    )
    updates_per_generation: int = Field(
        1, ge=1, description="Optimizer steps taken on each generated batch: one generation samples updates_per_generation x "
        "prompts_per_step prompts (the papers' rollout batch, e.g. 384 = 3 x 128), and each step trains on prompts_per_step "
        "of them. Steps after the first are off-policy, which the clipped ratio to the rollout policy's log-probs "
        "accounts for. Token weights and DAPO's filtering are taken over the whole generated batch.",
    )
    max_completion_length: int = Field(48, ge=4, description="Token budget of one completion.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of rollouts.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus (top-p) sampling of rollouts (the papers: 0.99); 1 samples the whole distribution.")
    beta: float = Field(
        0.0, ge=0, description="Coefficient of the KL loss to the reference policy (0 disables it): TRL's k3 estimate "
        "exp(r) - r - 1 of each token's log-ratio r, verl's and EasyR1's low_var_kl (which also clamps it to [-10, 10]).",
    )
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] | None = Field(
        None, description="TRL's loss aggregation, in place of the algorithm's: dapo is the token-level mean over the "
        "accumulated batch (EasyR1's loss_avg_mode: token, the fork's controlled comparison); grpo the per-response mean; "
        "None: the algorithm's own (grpo: grpo, dapo: dapo, dr_grpo: dr_grpo).",
    )
    entropy_penalty: float = Field(
        0.0, ge=0, description="Entropy penalty coefficient (VPPO: 0.06), added to the loss times the entropy estimate "
        "that entropy_penalty_form names; 0 disables it.",
    )
    entropy_penalty_form: Literal["sampled", "full_vocabulary"] = Field(
        "sampled", description="sampled: VPPO's term, the mean of −log π_θ(o_t) over the sampled tokens of the step (its "
        "code); full_vocabulary: TRL's mean of −Σ_v π_θ(v) log π_θ(v). Same value on-policy, different gradients.",
    )
    dual_clip: float | None = Field(
        None, gt=1, description="Dual-clip bound C of EasyR1's PPO loss (the four papers: 3): for a negative advantage the "
        "per-token loss is capped at −C·A, so no gradient flows when the ratio exceeds C. Must exceed 1 + the "
        "algorithm's epsilon_high. None: TRL's plain clipped loss.",
    )
    format_reward: float = Field(0.0, ge=0, le=1, description="Weight of the format reward; accuracy gets 1 - this.")
    max_dynamic_sampling_tries: int = Field(4, ge=1, description="DAPO: generation rounds allowed to fill a batch with mixed-reward groups.")
    dynamic_sampling_tolerance: float = Field(
        1e-6, ge=0, description="DAPO: a group counts as mixed when its total rewards span more than this (float noise of "
        "weighted rewards such as 0.9 accuracy + 0.1 format is not a mix).",
    )
    overlong_cache: int | None = Field(None, ge=1, description="DAPO overlong reward shaping L_cache (L_max = max_completion_length); None disables it.")
    logging_steps: int = Field(1, ge=1, description="Optimizer steps between logged metrics; a multiple of updates_per_generation.")
    save_steps: int = Field(10, ge=1, description="Optimizer steps between checkpoints; a multiple of updates_per_generation.")
    num_processes: int = Field(
        1, ge=1, description="Processes one run trains on (one per GPU; gloo processes on CPU), launched by `accelerate launch`. "
        "prompts_per_step stays the global batch; batch-wide weighting statistics are taken over the global generated batch.",
    )
    distributed: Literal["ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp"] = Field(
        "ddp", description="Multi-process engine: the accelerate config workflow/accelerate/<this>.yaml."
    )
    mixed_precision: Literal["auto", "bf16", "no"] = Field(
        "auto", description="Training precision: bf16 computes under bf16 autocast over fp32 master weights (the optimizer "
        "steps on fp32, so lr 1e-6 updates do not round away); no: fp32 throughout; auto: bf16 where a GPU is visible, no on "
        "CPU. The policy is saved in the compute dtype. The accelerate config leaves it to this key (a config naming another fails at start).",
    )
    use_vllm: bool = Field(False, description="Generate rollouts with vLLM (must be installed) instead of transformers' generate.")
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate", description="vLLM in the training processes, or a separate `trl vllm-serve` server (TRL's modes)."
    )
    vllm_sampling: dict[str, Any] = Field(
        default_factory=dict,
        description="Further fields of vLLM's SamplingParams for the rollouts (e.g. repetition_penalty), with use_vllm. "
        "A field vLLM does not take, or one other keys decide (temperature, top_p, ...), fails validation.",
    )
    max_prompt_length: int | None = Field(
        None,
        ge=1,
        description="Longest prompt in tokens, image tokens included (Qwen2.5-VL: up to max_pixels / 784 per image). "
        "With use_vllm, vLLM's context (max_model_len) is this + max_completion_length; required then.",
    )
    lora: LoraParams | None = Field(
        None, description="Train a LoRA adapter instead of every weight (None: full fine-tuning). The run's model directory "
        "then holds the adapter and a reference to the policy it started from; loading it merges the two.",
    )
    signals_from_loss: bool = Field(
        False, description="Entropy and attention methods (those reading only entropy and attn_image: entropy_topk, atrl) "
        "take their signals from TRL's loss forward instead of a scoring forward of their own, as TRL's top_entropy_quantile "
        "does: no extra forward, but the method changes: batch-wide statistics (top-rho thresholds) are taken per "
        "micro-batch (over every process) instead of over the whole generated batch, and with updates_per_generation > 1 "
        "later updates read the current policy, not the rollout policy. Methods reading other signals keep their scoring forward.",
    )
    reuse_scoring_logps: bool = Field(
        True, description="With updates_per_generation > 1, TRL's old-policy log-probs (the ratio's denominator) are the "
        "scoring forward's, which reads the same rows, images and weights, in place of TRL's own no-grad forward: one forward "
        "of the generated batch fewer for every method that scores signals (none without a scoring forward: uniform, the "
        "oracles, signals_from_loss; nor with vLLM, whose importance sampling reads them earlier). Equal to float rounding "
        "in fp32 and under bf16 autocast on CPU (5e-7 on the tiny model); under FSDP with bf16, scoring runs the root "
        "modules (embeddings, final norm, lm_head) on their summoned fp32 weights under autocast where TRL's forward runs "
        "FSDP's bf16 copies, so the first update's ratio is 1 only to bf16 rounding. false: TRL's own forward.",
    )

    @model_validator(mode="after")
    def _grid(self) -> TrainParams:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds} contain duplicates")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods {self.methods} contain duplicates")
        if self.prompts_per_step % self.num_processes:
            raise ValueError(
                f"prompts_per_step ({self.prompts_per_step}) is not divisible by num_processes ({self.num_processes}): "
                "every process must hold whole prompt groups"
            )
        return self

    @field_validator("vllm_sampling")
    @classmethod
    def _vllm_fields(cls, settings: dict[str, Any]) -> dict[str, Any]:
        from tokencredit.vllm_settings import check_sampling_fields

        check_sampling_fields(settings)
        return settings

    @model_validator(mode="after")
    def _vllm_context(self) -> TrainParams:
        if self.use_vllm and self.max_prompt_length is None:
            raise ValueError("use_vllm needs max_prompt_length: vLLM's context is max_prompt_length + max_completion_length")
        return self

    @property
    def completions_per_process(self) -> int:
        """Completions one process trains on in one optimizer step."""
        return self.prompts_per_step * self.num_generations // self.num_processes

    @model_validator(mode="after")
    def _batch_schedule(self) -> TrainParams:
        if self.micro_batch_size is not None and self.completions_per_process % self.micro_batch_size:
            raise ValueError(
                f"micro_batch_size ({self.micro_batch_size}) does not divide the completions per process and optimizer step, "
                f"prompts_per_step x num_generations / num_processes = {self.prompts_per_step} x {self.num_generations} / "
                f"{self.num_processes} = {self.completions_per_process}"
            )
        # A logged row averages whole generated batches (rewards, weights and timings are measured once per
        # generation), and a checkpoint falls between two of them, so that a resumed run generates where an
        # uninterrupted one does.
        for key in ("logging_steps", "save_steps"):
            if getattr(self, key) % self.updates_per_generation:
                raise ValueError(
                    f"{key} ({getattr(self, key)}) is not a multiple of updates_per_generation ({self.updates_per_generation})"
                )
        return self

    @model_validator(mode="after")
    def _budgets(self) -> TrainParams:
        # Both would otherwise surface only after the run: an empty metrics.jsonl, or a failing first reward.
        if self.logging_steps > self.max_steps:
            raise ValueError(f"logging_steps ({self.logging_steps}) > max_steps ({self.max_steps}): no step would be logged")
        if self.overlong_cache is not None and self.overlong_cache > self.max_completion_length:
            raise ValueError(
                f"overlong_cache ({self.overlong_cache}) > max_completion_length ({self.max_completion_length}): "
                "DAPO's overlong penalty zone must fit in the completion budget"
            )
        return self


# What a policy's completions are cached for: `sampled` (scored for the token analysis, graded for
# avg@k), `greedy` (greedy accuracy) and `no_image` (greedy with the image removed: visual dependence).
Decoding = Literal["sampled", "greedy", "no_image"]
DECODINGS: tuple[Decoding, ...] = ("sampled", "greedy", "no_image")


class RolloutParams(Section):
    """How the cached completions are generated. Grading reads them; only these keys regenerate them."""

    num_samples: int = Field(4, ge=1, description="Samples per prompt of the `sampled` decoding: scored for the token analysis, graded for avg@k.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the `sampled` decoding.")
    max_new_tokens: int = Field(48, ge=1, description="Token budget of one completion, in every decoding.")
    batch_size: int = Field(32, ge=1, description="Prompts per generate call; also one shard of the rollout cache, the unit generation resumes from.")
    seed: int = Field(0, description="Sampling seed; each shard is reseeded from it, so a resumed cache equals an uninterrupted one.")

    def for_decoding(self, decoding: Decoding) -> dict[str, Any]:
        """The keys that decide one decoding's completions: its cache key and its rule's rerun key.

        Greedy decodings ignore the sampling keys, so a new temperature regenerates only `sampled`.
        """
        if decoding not in DECODINGS:
            raise ValueError(f"unknown decoding {decoding!r} (known: {', '.join(DECODINGS)})")
        keys = None if decoding == "sampled" else {"max_new_tokens", "batch_size"}
        return self.model_dump(mode="json", include=keys)


class ScoringParams(Section):
    chunk_size: int = Field(
        1024, ge=1, description="Token positions per chunk when computing entropy and exact KL, and response queries per "
        "chunk (one row at a time) when computing attn_image: heads x chunk_size x sequence float32 scores at most.",
    )
    attention_layers: list[int] = Field(default_factory=lambda: [-1], description="Layers whose attention feeds attn_image (negative: from the end).")
    entropy_top_p: float = Field(
        0.95, gt=0, le=1, description="The entropy_top_p signal (ToR's Eq. 5, method tor_top_p): entropy of the fewest most probable "
        "tokens whose probability reaches this (ToR: 0.95).",
    )
    renormalize_top_p: bool = Field(
        True, description="entropy_top_p over the top-p set renormalised (the fork's reading; ToR's paper does not say), "
        "or the set's terms -sum p log p as they are.",
    )


class ScoreParams(Section):
    """The `score` rule: signals and method weights on cached rollouts. Training never reads this section."""

    batch_size: int = Field(64, ge=1, description="Responses per scoring forward.")
    weighting_prompts: int = Field(
        8, ge=1, description="Prompts whose samples form one batch for the methods' batch-wide statistics "
        "(top-rho thresholds, VPPO's min/max), as one generated batch (train.prompts_per_step x train.updates_per_generation) does in training.",
    )
    counterfactuals: list[Literal[
        "drop_image", "mask_visual_attention", "patch_blackening", "gaussian_noise", "blur", "gray", "pixel_value_noise",
        "harmonized_patches", "salient_value_mean",
    ]] = Field(default_factory=list, description="Counterfactual inputs scored in addition to those the methods need (e.g. VPPO's ablations).")
    seed: int = Field(0, description="Seed of the counterfactual noise (patch blackening, Gaussian noise).")


class AnalysisParams(Section):
    """The report's token analysis of the scores (the `report` rule)."""

    splits: list[Literal["test", "test_ood"]] = Field(
        default_factory=lambda: ["test"],
        description="Synthetic splits whose rollouts are generated, scored and analysed (the analysis needs the synthetic "
        "task's ground-truth token roles: with a real training set nothing is analysed).",
        json_schema_extra=GRID,
    )
    n_bootstrap: int = Field(200, ge=10, description="Bootstrap resamples (of responses) for the AUROC confidence intervals.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the intervals.")
    top_fraction: float = Field(0.15, gt=0, le=1, description="Share of a response's tokens whose signal mass measures concentration (AT-RL's 15 % anchors).")
    viewer_responses: int = Field(8, ge=1, description="Sampled responses per policy shown in the token viewer.")
    seed: int = Field(0, description="Seed of the bootstrap and of the viewer's choice of responses.")


class EvalParams(Section):
    """How the cached completions (see `rollouts`) are graded: changing these regenerates nothing."""

    splits: list[Literal["test", "test_ood"]] = Field(
        default_factory=lambda: ["test", "test_ood"], description="Synthetic splits every policy is graded on (none with a real training set).", json_schema_extra=GRID
    )
    benchmarks: list[str] = Field(
        default_factory=list, description="Keys of `benchmarks` every policy is graded on (results/eval/{policy}/{benchmark}.json).", json_schema_extra=GRID
    )
    k: int | None = Field(
        None, ge=1, description="avg@k and pass@k grade the first k cached samples of each question; None: all rollouts.num_samples."
    )
    without_image: bool = Field(True, description="Also grade the greedy completions with the image removed (visual dependence).")
    suite: str | None = Field(
        None, description="A paper's benchmark table with its protocol (tokencredit.suites: papo, vppo, pgpo, tor, pepo, vepo, "
        "dvrp, comparison): defines one `benchmarks` entry per column on the local copies in suite_paths and grades them; "
        "the protocol keys (answer format boxed, 8 samples at T 1.0, 2,048 new tokens, eval.k 8) must be set as it needs.",
        json_schema_extra=GRID,
    )
    suite_paths: dict[str, str] = Field(
        default_factory=dict, description="Local copies a suite reads, by release: papo_eval (PAPO-Galaxy/PAPO_eval), "
        "vppo_eval (chamber111/VPPO-Eval), pope (lmms-lab/POPE), hallusionbench (lmms-lab/HallusionBench).",
        json_schema_extra=GRID,
    )

    @property
    def decodings(self) -> list[Decoding]:
        """The cached decodings grading reads."""
        return [d for d in DECODINGS if d != "no_image" or self.without_image]


class PromptParams(Section):
    """The user text of real datasets and benchmarks. The synthetic task keeps its own format."""

    template: str = Field(
        "{question}",
        description="`{question}` is replaced by the item's question (with its choices), e.g. '{question} You first think "
        "... enclosed within <think> </think> tags. Then, provide your final answer enclosed within \\\\boxed{}.' "
        "The system turn is the chat template's default (Qwen2.5-VL: 'You are a helpful assistant.').",
    )

    answer_format: Literal["boxed", "tags"] = Field(
        "tags", description="The marker the template asks the final answer in: boxed (the papers' '<think> </think> then "
        "\\boxed{}'), or tags ('<think>...</think><answer>...</answer>', the synthetic task's). The format reward checks "
        "it and grading reads the last such marker after </think> (the whole response when there is no </think>).",
    )

    @field_validator("template")
    @classmethod
    def _one_question(cls, template: str) -> str:
        if template.count("{question}") != 1:
            raise ValueError(f"template must hold {{question}} exactly once, got {template!r}")
        return template

    @model_validator(mode="after")
    def _asks_for_its_format(self) -> PromptParams:
        # A template naming the other marker would be graded on an answer it never asks for.
        other = {"boxed": "<answer>", "tags": "\\boxed"}[self.answer_format]
        if other in self.template:
            raise ValueError(f"template asks for {other!r}, but answer_format is {self.answer_format!r}: set answer_format to match it")
        return self


class BenchmarkSpec(Section):
    """One entry of `benchmarks`: a local copy of a published benchmark and the rows to grade."""

    source: str = Field(description="Adapter in tokencredit.sources, e.g. mathvista, mathverse, hallusionbench.")
    path: str = Field(description="Local copy of the published benchmark (its release directory).")
    split: str | None = Field(None, description="Published split to read; None: the adapter's default (e.g. testmini).")
    where: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Keep only rows whose published field (dotted when nested, e.g. metadata.subject) has one of these "
        "values, e.g. {problem_version: [Vision Only]} for MathVerse's vision-only subset.",
    )
    limit: int | None = Field(None, ge=1, description="Keep only the first N rows (after `where`).")
    on_bad_row: Literal["error", "skip"] = Field(
        "error", description="A malformed row stops with an error naming it, or is skipped, counted and logged."
    )

    @model_validator(mode="after")
    def _readable(self) -> BenchmarkSpec:
        check_local_copy(self.source, self.path)
        return self


DataParams.model_rebuild()  # its `validation` is a BenchmarkSpec, defined after it


class TrackingParams(Section):
    experiment: str = Field("tokencredit", min_length=1, description="MLflow experiment name.")
    tracking_uri: str = Field("sqlite:///mlflow.db", description="MLflow backend; relative sqlite paths are resolved against the repo root.")


class JobResources(Section):
    """What one job of a rule asks its executor for: Snakemake resources, submitted by the SLURM profile."""

    gpus: int = Field(0, ge=0, description="GPUs per job (Snakemake resource `gpu`); a train job needs one per process.")
    gpu_model: str | None = Field(None, description="GPU model the job needs, e.g. h100 (`gpu_model`); None: any.")
    mem_mb: int | None = Field(None, ge=1, description="Host memory per job in MB (`mem_mb`); None: the profile's default.")
    runtime: int | None = Field(None, ge=1, description="Wall-clock limit per job in minutes (`runtime`); None: the profile's default.")
    partition: str | None = Field(None, description="SLURM partition (`slurm_partition`); None: the profile's default.")
    gpu_memory_gb: float | None = Field(
        None, gt=0, description="Memory of each GPU the job gets, in GB. With it, the workflow plans the job's peak per GPU "
        "(tokencredit.memory_plan) before any job and stops if it exceeds this less a 10 % margin; None: no check."
    )
    allow_over_plan: bool = Field(False, description="Run the job even when its memory plan exceeds gpu_memory_gb (the plan is an estimate).")

    def snakemake(self) -> dict[str, int | str]:
        """Snakemake's names for the resources that are set (a rule reads them with `resources: **...`); `gpu`
        always (0: none, which the SLURM executor requests no GPU for): the rule passes it to its step, which
        stops when a job asking for GPUs sees none."""
        named = {"gpu": self.gpus, "gpu_model": self.gpu_model, "mem_mb": self.mem_mb, "runtime": self.runtime, "slurm_partition": self.partition}
        return {key: value for key, value in named.items() if value is not None}


class ResourcesParams(Section):
    """Resources per rule. They choose where jobs run, not what they compute: changing them reruns nothing."""

    sft: JobResources = Field(default_factory=JobResources)
    train: JobResources = Field(default_factory=JobResources)
    rollouts: JobResources = Field(default_factory=JobResources)
    score: JobResources = Field(default_factory=JobResources)


class Params(Section):
    data: DataParams = Field(default_factory=DataParams)
    model: ModelParams = Field(default_factory=ModelParams)
    sft: SFTParams = Field(default_factory=SFTParams)
    train: TrainParams = Field(default_factory=TrainParams)
    methods: dict[str, MethodSpec] = Field(
        default_factory=_default_methods,
        description="Named method variants; train.methods picks the grid from these. Entries are merged by name over "
        "the built-in ones: a new name adds a method, a known name replaces only that method.",
    )
    rollouts: RolloutParams = Field(default_factory=RolloutParams)
    scoring: ScoringParams = Field(default_factory=ScoringParams)
    score: ScoreParams = Field(default_factory=ScoreParams)
    analysis: AnalysisParams = Field(default_factory=AnalysisParams)
    eval: EvalParams = Field(default_factory=EvalParams)
    tracking: TrackingParams = Field(default_factory=TrackingParams)
    resources: ResourcesParams = Field(default_factory=ResourcesParams)
    prompt: PromptParams = Field(default_factory=PromptParams)
    benchmarks: dict[str, BenchmarkSpec] = Field(
        default_factory=dict, description="Named local benchmarks; eval.benchmarks picks the ones graded."
    )

    @model_validator(mode="before")
    @classmethod
    def _suite_benchmarks(cls, raw: Any) -> Any:
        from tokencredit.suites import expand_suite

        return expand_suite(raw) if isinstance(raw, dict) else raw

    @model_validator(mode="after")
    def _suite_protocol(self) -> Params:
        from tokencredit.suites import PROTOCOL, protocol_errors

        if self.eval.suite is not None:
            values = {key: getattr(getattr(self, key.split(".")[0]), key.split(".")[1]) for key in PROTOCOL}
            values["eval.k"] = self.eval.k or self.rollouts.num_samples
            errors = protocol_errors(values)
            if errors:
                raise ValueError(f"eval.suite {self.eval.suite!r}: " + "; ".join(errors))
        return self

    @model_validator(mode="after")
    def _eval_targets(self) -> Params:
        bad = [name for name in self.benchmarks if not BENCHMARK_NAME.fullmatch(name) or name in ("train", "validation", "test", "test_ood")]
        if bad:
            raise ValueError(f"benchmark names {bad} must be letters, digits and _ and must not name a data split")
        unknown = [name for name in self.eval.benchmarks if name not in self.benchmarks]
        if unknown:
            raise ValueError(f"eval.benchmarks names {unknown}, which are not defined under benchmarks (defined: {sorted(self.benchmarks)})")
        if self.data.source != "synthetic" and self.eval.splits:
            raise ValueError(f"eval.splits {self.eval.splits} are synthetic splits, but data.source is {self.data.source!r}: grade eval.benchmarks instead")
        if not self.eval.splits and not self.eval.benchmarks:
            raise ValueError("eval.splits and eval.benchmarks are both empty: nothing would be graded")
        if self.eval.k is not None and self.eval.k > self.rollouts.num_samples:
            raise ValueError(f"eval.k ({self.eval.k}) exceeds rollouts.num_samples ({self.rollouts.num_samples}): grading reads the cached samples")
        if self.data.source != "synthetic" and self.model.path is None:
            # Real data has no target chains of thought for the tiny model's SFT: RL starts from a checkpoint.
            raise ValueError(f"data.source is {self.data.source!r}: set model.path to the local checkpoint RL starts from")
        return self

    @model_validator(mode="after")
    def _probe_sft_needs_claims(self) -> Params:
        if self.sft.claim_probe_fraction > 0 and self.data.claims_per_image == 0:
            raise ValueError(f"sft.claim_probe_fraction ({self.sft.claim_probe_fraction}) asks claims of the SFT targets, but data.claims_per_image is 0: set it (params/vapo.yaml)")
        return self

    @model_validator(mode="after")
    def _one_gpu_per_process(self) -> Params:
        gpus, processes = self.resources.train.gpus, self.train.num_processes
        if gpus and gpus != processes:
            raise ValueError(f"resources.train.gpus ({gpus}) must equal train.num_processes ({processes}): one process per GPU")
        return self

    @field_validator("methods", mode="before")
    @classmethod
    def _over_built_in_methods(cls, methods: Any) -> Any:
        return {**_default_methods(), **methods} if isinstance(methods, dict) else methods

    @model_validator(mode="after")
    def _methods_exist(self) -> Params:
        from tokencredit.recipe import resolve  # torch-backed; imported only when validating
        from tokencredit.signals import LABEL_SIGNALS

        unknown = [m for m in self.train.methods if m not in self.methods]
        if unknown:
            raise ValueError(f"train.methods names {unknown}, which are not defined under methods (defined: {sorted(self.methods)})")
        for name in self.train.methods:
            recipe = resolve(name, self.methods[name])
            if self.data.source != "synthetic" and recipe.needs & LABEL_SIGNALS:
                raise ValueError(
                    f"methods.{name} (weighting {self.methods[name].weighting!r}) reads ground-truth token roles, which only "
                    f"the synthetic task labels, but data.source is {self.data.source!r}: drop {name!r} from train.methods"
                )
            reward = recipe.reward
            if reward is None:
                continue
            if "claims" in reward.columns:
                self._check_claim_probes(name, reward)
            rewarded = f"methods.{name} (reward {self.methods[name].reward.name!r}) rewards a format"
            if self.data.source == "synthetic" and reward.target_style not in (None, self.data.target_style):
                raise ValueError(
                    f"{rewarded} the tiny model learns only from data.target_style: {reward.target_style} (params/grit.yaml), "
                    f"but data.target_style is {self.data.target_style!r}: set it, or drop {name!r} from train.methods"
                )
            if self.data.source != "synthetic" and reward.prompt_asks is not None and reward.prompt_asks not in self.prompt.template:
                raise ValueError(
                    f"{rewarded} the prompt must ask for, but prompt.template does not contain {reward.prompt_asks!r}: "
                    f"ask for it (GRIT's instruction, e.g. the fork's examples/system_prompt/grit_GR.txt), or drop {name!r} from train.methods"
                )
        return self

    def _check_claim_probes(self, name: str, reward: Any) -> None:
        """VAPO's claim probes need equal forwards on every process, and on the synthetic task claims in the
        data and a policy taught to answer them (a real training set's claims: tokencredit.sources.check_sources)."""
        uses = f"methods.{name} (reward {self.methods[name].reward.name!r}) asks the policy claims about each image"
        if self.train.distributed == "fsdp":
            raise ValueError(f"{uses}: the probes run as many forwards as a process has correct responses, which FSDP's per-block gathers cannot: use ddp or deepspeed")
        if self.data.source != "synthetic":
            return
        from tokencredit.reward_sets.vapo import ClaimProbeReward

        probes = next(f.probes for f in reward.funcs if isinstance(f, ClaimProbeReward))  # K, the reward set's own default or hparam
        if self.data.claims_per_image < probes:
            raise ValueError(f"{uses}, {probes} per response, each a different claim, but data.claims_per_image is {self.data.claims_per_image}: set it to at least {probes} (params/vapo.yaml)")
        if self.sft.claim_probe_fraction == 0:
            raise ValueError(f"{uses}, which the tiny model answers at chance unless taught: set sft.claim_probe_fraction (params/vapo.yaml)")


class ParamsError(ValueError):
    """Invalid parameters; the message lists every bad key path with its reason."""


def _format(err: ValidationError, source: str) -> str:
    lines = [f"invalid parameters in {source}:"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"  {path}: {e['msg']}")
    return "\n".join(lines)


def validate(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a nested dict; raise ParamsError naming each bad key path."""
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format(err, source)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"params file {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"params file {path} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts merge key by key (as Snakemake merges --configfile); other values are replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def merged_params(*paths: str | Path) -> dict[str, Any]:
    """Raw params of several YAML files, each overriding the ones before it."""
    raw: dict[str, Any] = {}
    for path in paths:
        raw = deep_merge(raw, _read_yaml(Path(path)))
    return raw


def load_params(*paths: str | Path) -> Params:
    return validate(merged_params(*paths), " + ".join(str(p) for p in paths))


def section_json(params: Params, name: str) -> str:
    """One section as canonical JSON, grid keys left out: what a rule passes to its step (and its rerun key)."""
    section = getattr(params, name)
    grid = {key for key, field in type(section).model_fields.items() if field.json_schema_extra == GRID}
    return json.dumps(section.model_dump(mode="json", by_alias=True, exclude=grid), sort_keys=True)


def json_schema() -> dict[str, Any]:
    return Params.model_json_schema(by_alias=True)


ACTIVE = "params.yaml"  # DVC's params file: the active params set, what `dvc repro` / `dvc exp run` run
DEFAULT = "params/default.yaml"


def activate(*sets: str | Path, root: Path = Path(".")) -> Path:
    """Write params.yaml: params/default.yaml merged with `sets`, validated (DVC's stage runs it)."""
    paths = [root / DEFAULT, *(root / p for p in sets)]
    raw = merged_params(*paths)
    load_params(*paths)
    named = "".join(f" {p}" for p in sets)
    header = f"# Written by `python -m tokencredit.params --activate{named}`: {DEFAULT}{named.replace(' ', ' + ')}.\n"
    header += "# DVC's stage runs it; `dvc exp run -S key=value` edits it.\n"
    target = root / ACTIVE
    target.write_text(header + yaml.safe_dump(raw, sort_keys=False))
    return target


if __name__ == "__main__":
    # python -m tokencredit.params > params/schema.json
    # python -m tokencredit.params --activate params/smoke.yaml   (params.yaml: the set DVC runs)
    import sys

    if sys.argv[1:2] == ["--activate"]:
        print(activate(*sys.argv[2:]))
    else:
        print(json.dumps(json_schema(), indent=2, sort_keys=True))
