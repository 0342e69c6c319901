import json

# Rollouts are the expensive part, so every decoding of every policy on every split or benchmark is
# a cached artifact of its own (tokencredit.rollouts), keyed by the policy, the data and the params
# that decide that decoding; `score` and `grade` read them back, so changing a scoring or grading
# parameter generates nothing. One `rollouts` job per policy ensures all of its decodings: start-up
# and model loading are paid once, and a decoding whose cache key still matches is kept, not
# regenerated (a new temperature regenerates `sampled` alone).
# The token analysis needs the synthetic task's ground-truth roles: a real training set has none.
ANALYSIS_SPLITS = [] if REAL_DATA else P.analysis.splits
GRADED = [*P.eval.splits, *P.eval.benchmarks]


def rollout_decodings(dataset):
    """What a policy's rollouts job caches of `dataset`: what grading reads, and `sampled` for the scores."""
    wanted = set(P.eval.decodings if dataset in GRADED else []) | ({"sampled"} if dataset in ANALYSIS_SPLITS else set())
    return [d for d in DECODINGS if d in wanted]


ROLLOUT_DATASETS = list(dict.fromkeys([*GRADED, *ANALYSIS_SPLITS]))
ROLLOUT_FILES = [f"results/rollouts/{{policy}}/{d}/{decoding}.parquet" for d in ROLLOUT_DATASETS for decoding in rollout_decodings(d)]


rule rollouts:
    input:
        policy=lambda wc: policy_input(wc.policy),
        data=[data_file(d) for d in ROLLOUT_DATASETS],
    output:
        # update: Snakemake keeps the files when the job reruns (it deletes outputs otherwise), so
        # the step can keep every decoding whose cache key still matches. The output list is not a
        # rerun key: grading fewer decodings reruns nothing, grading more generates only those.
        [update(f) for f in ROLLOUT_FILES],
    params:
        rollouts=section("rollouts"),
        model=section("model"),
        policy=lambda wc: policy_dir(wc.policy),
    threads: 1
    resources:
        **P.resources.rollouts.snakemake(),
    log:
        "results/logs/rollouts/{policy}.log",
    shell:
        "python -m steps.rollouts --params {params.rollouts:q} --model-params {params.model:q}"
        " --policy-name {wildcards.policy} --policy {params.policy} --data {input.data} --out {output}"
        # Shards live outside the outputs: generation resumes from them.
        " --work results/checkpoints/rollouts/{wildcards.policy} --threads {threads} > {log} 2>&1"


rule score:
    input:
        # ancient: the rollouts job touches every decoding it keeps, so the file's time says nothing;
        # the sampled decoding's cache key does, through the rollouts and model params below and the
        # policy and split inputs. Adding a benchmark or the no_image decoding rescores nothing.
        rollouts=ancient("results/rollouts/{policy}/{split}/sampled.parquet"),
        policy=lambda wc: manifest(policy_dir(wc.policy)),
        split="results/data/{split}.parquet",
    output:
        "results/scores/{policy}/{split}.parquet",
    params:
        score=section("score"),
        scoring=section("scoring"),
        # Every method variant is weighted on every policy's tokens, so any method change rescores (never resamples).
        methods=json.dumps({name: spec.model_dump(mode="json") for name, spec in P.methods.items()}, sort_keys=True),
        model=section("model"),
        rollouts=section("rollouts"),
        policy=lambda wc: policy_dir(wc.policy),
    threads: 1
    resources:
        **P.resources.score.snakemake(),
    log:
        "results/logs/score/{policy}-{split}.log",
    shell:
        "python -m steps.score --params {params.score:q} --scoring {params.scoring:q} --methods {params.methods:q}"
        " --model-params {params.model:q} --policy-name {wildcards.policy} --policy {params.policy}"
        " --rollouts {input.rollouts} --data results/data --split {wildcards.split} --out {output}"
        " --threads {threads} > {log} 2>&1"
