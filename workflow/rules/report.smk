rule report:
    input:
        evals=expand("results/eval/{policy}/{split}.json", policy=POLICIES, split=[*P.eval.splits, *P.eval.benchmarks]),
        runs=[manifest(f"results/runs/{run}") for run in RUNS],
        scores=expand("results/scores/{policy}/{split}.parquet", policy=POLICIES, split=ANALYSIS_SPLITS),
    output:
        summary="results/report/summary.md",
        metrics="results/report/metrics.json",
        html="results/report/index.html",
        analysis="results/report/analysis.json",
    params:
        runs=expand("results/runs/{run}", run=RUNS),
        analysis=section("analysis"),
    log:
        "results/logs/report.log",
    shell:
        "python -m steps.report --evals {input.evals} --runs {params.runs} --scores {input.scores}"
        " --analysis {params.analysis:q} --out results/report > {log} 2>&1"
