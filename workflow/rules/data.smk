from tokencredit.sources.training import REAL_SPLITS

# The synthetic task's four splits, or a real training set's train and validation (data.source).
REAL_DATA = P.data.source != "synthetic"
DATA_SPLITS = REAL_SPLITS if REAL_DATA else SPLITS


wildcard_constraints:
    benchmark="|".join(P.benchmarks) or "(?!)",


rule prepare_data:
    output:
        splits=expand("results/data/{split}.parquet", split=DATA_SPLITS),
        images=directory("results/data/images"),
    params:
        data=section("data"),
        # The prompt shapes real questions only: the synthetic task does not read it. A function,
        # so that Snakemake does not read the template's "{question}" as a wildcard.
        prompt=lambda wc: section("prompt") if REAL_DATA else "",
    log:
        "results/logs/prepare_data.log",
    shell:
        "python -m steps.prepare_data --params {params.data:q}"
        + (" --prompt {params.prompt:q}" if REAL_DATA else "")
        + " --out results/data > {log} 2>&1"


rule prepare_benchmark:
    output:
        data="results/benchmarks/{benchmark}.parquet",
        images=directory("results/benchmarks/images/{benchmark}"),
    params:
        # Only this benchmark's entry: editing another benchmark reruns nothing here.
        spec=lambda wc: P.benchmarks[wc.benchmark].model_dump_json(),
        prompt=lambda wc: section("prompt"),
    log:
        "results/logs/prepare_benchmark/{benchmark}.log",
    shell:
        "python -m steps.prepare_data --benchmark {wildcards.benchmark} --spec {params.spec:q}"
        " --prompt {params.prompt:q} --out results/benchmarks > {log} 2>&1"
