import json

# Rollouts are the expensive part of the analysis, so they are a cached artifact of their own: the
# `rollouts` rule reads only the policy, the split and the `rollouts` params (the cache key), and
# `score` reads them back; changing a scoring or grading parameter reruns no generation.
# The token analysis needs the synthetic task's ground-truth roles: a real training set has none.
ANALYSIS_SPLITS = [] if REAL_DATA else P.analysis.splits


rule rollouts:
    input:
        policy=lambda wc: manifest(policy_dir(wc.policy)),
        split="results/data/{split}.parquet",
    output:
        "results/rollouts/{policy}/{split}.parquet",
    params:
        rollouts=section("rollouts"),
        model=section("model"),
        policy=lambda wc: policy_dir(wc.policy),
    threads: 1
    resources:
        **P.resources.rollouts.snakemake(),
    log:
        "results/logs/rollouts/{policy}-{split}.log",
    shell:
        "python -m steps.rollouts --params {params.rollouts:q} --model-params {params.model:q}"
        " --policy-name {wildcards.policy} --policy {params.policy} --data results/data --split {wildcards.split}"
        # Shards live outside the output, which Snakemake deletes before a rerun: generation resumes from them.
        " --out {output} --work results/checkpoints/rollouts/{wildcards.policy}-{wildcards.split}"
        " --threads {threads} > {log} 2>&1"


rule score:
    input:
        rollouts="results/rollouts/{policy}/{split}.parquet",
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
