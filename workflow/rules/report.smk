rule report:
    input:
        evals=expand("results/eval/{policy}/{split}.json", policy=POLICIES, split=P.eval.splits),
        runs=expand("results/runs/{run}", run=RUNS),
    output:
        summary="results/report/summary.md",
        metrics="results/report/metrics.json",
    log:
        "results/logs/report.log",
    shell:
        "python -m steps.report --evals {input.evals} --runs {input.runs} --out results/report > {log} 2>&1"
