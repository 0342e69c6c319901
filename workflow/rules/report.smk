rule report:
    input:
        evals=expand("results/eval/{policy}/{split}.json", policy=POLICIES, split=P.eval.splits),
        runs=expand("results/runs/{run}.manifest.json", run=RUNS),
    output:
        summary="results/report/summary.md",
        metrics="results/report/metrics.json",
    params:
        runs=expand("results/runs/{run}", run=RUNS),
    log:
        "results/logs/report.log",
    shell:
        "python -m steps.report --evals {input.evals} --runs {params.runs} --out results/report > {log} 2>&1"
