# Every policy's completions are cached (the `rollouts` rule) and graded from the cache, so a changed
# grading parameter regrades without generating. A benchmark's converted copy (results/benchmarks)
# is graded like a synthetic split (results/data). One job grades a policy on every split and
# benchmark: grading takes less time than a job's start-up.


rule grade:
    input:
        rollouts=[f"results/rollouts/{{policy}}/{d}/{decoding}.parquet" for d in GRADED for decoding in P.eval.decodings],
        data=[data_file(d) for d in GRADED],
    output:
        expand("results/eval/{{policy}}/{dataset}.json", dataset=GRADED),
    params:
        eval=section("eval"),
        policy=lambda wc: policy_dir(wc.policy),
    log:
        "results/logs/grade/{policy}.log",
    shell:
        "python -m steps.grade --params {params.eval:q} --policy-name {wildcards.policy} --policy {params.policy}"
        " --data {input.data} --rollouts results/rollouts/{wildcards.policy} --out {output} > {log} 2>&1"


# `snakemake benchmark_evals`: every policy on every benchmark of eval.benchmarks.
rule benchmark_evals:
    input:
        expand("results/eval/{policy}/{benchmark}.json", policy=POLICIES, benchmark=P.eval.benchmarks),
