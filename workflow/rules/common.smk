import os
import time
import uuid

from snakemake.exceptions import WorkflowError

from tokencredit.manifest import manifest_path
from tokencredit.memory_plan import check_memory
from tokencredit.params import DECODINGS, section_json, validate
from tokencredit.sources import check_sources
from tokencredit.synthetic import SPLITS

try:
    P = validate(config, "params (params/default.yaml + --configfile/--config overrides)")
    check_sources(P)
    check_memory(P)  # plans only rules that name resources.<rule>.gpu_memory_gb
except ValueError as err:  # ParamsError included
    raise WorkflowError(str(err)) from None

# Steps run as `python -m steps.<rule>` from any --directory.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))

# MLflow's own variables, so every step (and `mlflow ui`) sees the same backend.
os.environ.setdefault("MLFLOW_TRACKING_URI", P.tracking.tracking_uri)
os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", P.tracking.experiment)
# One id per `snakemake` call: the `invocation` tag of every job's MLflow run groups them (a job a
# cluster starts in a new Snakemake process inherits it).
os.environ.setdefault("TOKENCREDIT_INVOCATION", f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}")

RUNS = [f"{a}-{m}-s{s}" for a in P.train.algos for m in P.train.methods for s in P.train.seeds]
# RL starts from the SFT warm-up on the synthetic task, and from the checkpoint itself on real
# data (the papers train Instruct models directly).
START = "sft" if P.data.source == "synthetic" else "base"
POLICIES = [START, *RUNS]


wildcard_constraints:
    algo="grpo|dapo|dr_grpo",
    method="[A-Za-z0-9_]+",
    seed=r"\d+",
    split="|".join(SPLITS),
    # A synthetic split or a benchmark (params forbid a benchmark named like a split).
    dataset="|".join([*SPLITS, *P.benchmarks]),
    decoding="|".join(DECODINGS),


def section(name):
    """A params section as JSON: the rule's own rerun key and its step's argument."""
    return section_json(P, name)


def manifest(directory):
    """Rules depend on a model directory through its content manifest (see tokencredit.manifest)."""
    return str(manifest_path(directory))


def data_dir(dataset):
    """Where a split lives: results/data for the synthetic splits, results/benchmarks for a benchmark."""
    return "results/benchmarks" if dataset in P.benchmarks else "results/data"


def data_file(dataset):
    return f"{data_dir(dataset)}/{dataset}.parquet"


def policy_dir(policy):
    if policy == "base":
        return P.model.path or "results/models/base"
    return "results/models/sft" if policy == "sft" else f"results/runs/{policy}"


def policy_input(policy):
    """What a rule depends on: a pipeline-built model through its manifest, a local checkpoint as is."""
    path = policy_dir(policy)
    return path if path == P.model.path else manifest(path)
