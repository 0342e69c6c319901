"""What every step shares: argument parsing of params sections, the policy steps' MLflow runs, CPU threads."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from tokencredit.params import ModelParams
from tokencredit.run_record import read_run_record
from tokencredit.tracking import JobRun, job_run


def parser(description: str) -> argparse.ArgumentParser:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return argparse.ArgumentParser(description=description)


def section(model: type[BaseModel]):
    """argparse type: a params section passed as JSON by the Snakemake rule, validated again here.

    argparse reports a plain ValueError as "invalid <type> value" alone; ArgumentTypeError keeps
    pydantic's message, which names each bad key and why.
    """

    def parse(text: str) -> BaseModel:
        try:
            return model.model_validate_json(text)
        except ValidationError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = model.__name__
    return parse


def set_threads(threads: int) -> None:
    """One job, `threads` cores: Snakemake schedules jobs side by side on the remaining ones."""
    import torch  # here, not at the top: a step that never touches a model does not pay for it

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def require_gpus(gpus: int, rule: str) -> None:
    """Stop before any work when the job's resources ask for GPUs and none is visible: it would
    otherwise run on the CPU, silently and for days."""
    if not gpus:
        return
    import torch

    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise RuntimeError(
            f"resources.{rule}.gpus is {gpus} but no GPU is visible to this job (torch.cuda.is_available() is False, "
            f"CUDA_VISIBLE_DEVICES={visible!r}, torch {torch.__version__}): run it where GPUs are, or set resources.{rule}.gpus: 0"
        )


def policy_parser(description: str, params: type[BaseModel], nargs: str | None = None) -> argparse.ArgumentParser:
    """The arguments of a step that works on one policy (rollouts, score); nargs="+": several data and output files."""
    p = parser(description)
    p.add_argument("--params", type=section(params), required=True)
    p.add_argument("--model-params", type=section(ModelParams), required=True)
    p.add_argument("--policy-name", required=True)
    p.add_argument("--policy", type=Path, required=True)
    p.add_argument("--data", type=Path, nargs=nargs, required=True)
    p.add_argument("--out", type=Path, nargs=nargs, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gpus", type=int, default=0, help="GPUs the job's resources ask for (resources.<rule>.gpus)")
    return p


def policy_run(stage: str, args: argparse.Namespace, params: dict, **tags: str) -> contextlib.AbstractContextManager[JobRun]:
    """The step's MLflow run, tagged like its policy's own run (run.json) and nested under it."""
    record = read_run_record(args.policy)
    identity = record.tags if record else {"policy": args.policy_name}
    parent = record.mlflow_run_id if record else None
    return job_run(stage, params=params, tags={**identity, **tags}, parent_run_id=parent)
