import json

# Rollouts are the expensive part, so every decoding of every policy on every split or benchmark is
# a cached artifact of its own (tokencredit.rollouts), keyed by the policy, the data and the params
# that decide that decoding; `score` and `grade` read them back, so changing a scoring or grading
# parameter generates nothing. One `rollouts` job per policy and split (or benchmark) ensures all of
# its decodings: start-up and model loading are paid once, and a decoding whose cache key still
# matches is kept, not regenerated (a new temperature regenerates `sampled` alone). Per split, not
# per policy: Snakemake reruns every consumer of a job that reruns, so adding a benchmark must not
# touch the jobs whose sampled completions `score` reads.
# The token analysis needs the synthetic task's ground-truth roles: a real training set has none.
ANALYSIS_SPLITS = [] if REAL_DATA else P.analysis.splits
GRADED = [*P.eval.splits, *P.eval.benchmarks]


rule rollouts:
    input:
        policy=lambda wc: policy_input(wc.policy),
        data=lambda wc: data_file(wc.dataset),
    output:
        # update: Snakemake keeps the files when the job reruns (it deletes outputs otherwise), so
        # the step can keep every decoding whose cache key still matches. The output list is not a
        # rerun key: grading without no_image reruns nothing.
        [update(f"results/rollouts/{{policy}}/{{dataset}}/{decoding}.parquet") for decoding in P.eval.decodings],
    params:
        rollouts=section("rollouts"),
        model=section("model"),
        policy=lambda wc: policy_dir(wc.policy),
    threads: 1
    resources:
        **P.resources.rollouts.snakemake(),
    log:
        "results/logs/rollouts/{policy}-{dataset}.log",
    shell:
        "python -m steps.rollouts --params {params.rollouts:q} --model-params {params.model:q}"
        " --policy-name {wildcards.policy} --policy {params.policy} --data {input.data} --out {output}"
        # Shards live outside the outputs: generation resumes from them.
        " --work results/checkpoints/rollouts/{wildcards.policy}-{wildcards.dataset} --threads {threads} --gpus {resources.gpu} > {log} 2>&1"


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
        " --threads {threads} --gpus {resources.gpu} > {log} 2>&1"
