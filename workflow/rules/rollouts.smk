import json

# Rollouts are the expensive part, so every decoding of every policy on every split or benchmark is
# a cached artifact of its own: the `rollouts` rule reads only the policy, the data and the params
# that decide that decoding (the cache key), and `score` and `grade` read them back; changing a
# scoring or grading parameter, or the sampling temperature for a greedy decoding, generates nothing.
# The token analysis needs the synthetic task's ground-truth roles: a real training set has none.
ANALYSIS_SPLITS = [] if REAL_DATA else P.analysis.splits


rule rollouts:
    input:
        policy=lambda wc: policy_input(wc.policy),
        data=lambda wc: data_file(wc.dataset),
    output:
        "results/rollouts/{policy}/{dataset}/{decoding}.parquet",
    params:
        rollouts=lambda wc: json.dumps(P.rollouts.for_decoding(wc.decoding), sort_keys=True),
        model=section("model"),
        policy=lambda wc: policy_dir(wc.policy),
        data=lambda wc: data_dir(wc.dataset),
    threads: 1
    resources:
        **P.resources.rollouts.snakemake(),
    log:
        "results/logs/rollouts/{policy}-{dataset}-{decoding}.log",
    shell:
        "python -m steps.rollouts --params {params.rollouts:q} --model-params {params.model:q}"
        " --policy-name {wildcards.policy} --policy {params.policy} --data {params.data} --split {wildcards.dataset}"
        " --decoding {wildcards.decoding} --out {output}"
        # Shards live outside the output, which Snakemake deletes before a rerun: generation resumes from them.
        " --work results/checkpoints/rollouts/{wildcards.policy}-{wildcards.dataset}-{wildcards.decoding}"
        " --threads {threads} > {log} 2>&1"


rule score:
    input:
        rollouts="results/rollouts/{policy}/{split}/sampled.parquet",
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
