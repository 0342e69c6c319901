rule evaluate:
    input:
        policy=lambda wc: policy_input(wc.policy),
        split="results/data/{split}.parquet",
    output:
        "results/eval/{policy}/{split}.json",
    params:
        eval=section("eval"),
        model=section("model"),
        policy=lambda wc: policy_dir(wc.policy),
    threads: 1
    resources:
        **P.resources.evaluate.snakemake(),
    log:
        "results/logs/eval/{policy}-{split}.log",
    shell:
        "python -m steps.evaluate --params {params.eval:q} --model-params {params.model:q}"
        " --policy-name {wildcards.policy} --policy {params.policy} --data results/data --split {wildcards.split}"
        " --out {output} --threads {threads} > {log} 2>&1"


rule evaluate_benchmark:
    input:
        policy=lambda wc: policy_input(wc.policy),
        benchmark="results/benchmarks/{benchmark}.parquet",
    output:
        "results/eval/{policy}/{benchmark}.json",
    params:
        eval=section("eval"),
        model=section("model"),
        policy=lambda wc: policy_dir(wc.policy),
    threads: 1
    resources:
        **P.resources.evaluate.snakemake(),
    log:
        "results/logs/eval/{policy}-{benchmark}.log",
    shell:
        "python -m steps.evaluate --params {params.eval:q} --model-params {params.model:q}"
        " --policy-name {wildcards.policy} --policy {params.policy} --data results/benchmarks --benchmark {wildcards.benchmark}"
        " --out {output} --threads {threads} > {log} 2>&1"


# `snakemake benchmark_evals`: every policy on every benchmark of eval.benchmarks.
rule benchmark_evals:
    input:
        expand("results/eval/{policy}/{benchmark}.json", policy=POLICIES, benchmark=P.eval.benchmarks),
