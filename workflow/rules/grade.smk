# Every policy's completions are cached (the `rollouts` rule, one job per decoding) and graded from
# the cache, so a changed grading parameter regrades without generating. A benchmark's converted
# copy (results/benchmarks) is graded like a synthetic split (results/data).


rule grade:
    input:
        rollouts=expand("results/rollouts/{{policy}}/{{dataset}}/{decoding}.parquet", decoding=P.eval.decodings),
        data=lambda wc: data_file(wc.dataset),
    output:
        "results/eval/{policy}/{dataset}.json",
    params:
        eval=section("eval"),
        policy=lambda wc: policy_dir(wc.policy),
        data=lambda wc: data_dir(wc.dataset),
    log:
        "results/logs/grade/{policy}-{dataset}.log",
    shell:
        "python -m steps.grade --params {params.eval:q} --policy-name {wildcards.policy} --policy {params.policy}"
        " --data {params.data} --split {wildcards.dataset} --rollouts results/rollouts/{wildcards.policy}/{wildcards.dataset}"
        " --out {output} > {log} 2>&1"


# `snakemake benchmark_evals`: every policy on every benchmark of eval.benchmarks.
rule benchmark_evals:
    input:
        expand("results/eval/{policy}/{benchmark}.json", policy=POLICIES, benchmark=P.eval.benchmarks),
