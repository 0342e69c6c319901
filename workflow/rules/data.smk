rule prepare_data:
    output:
        splits=expand("results/data/{split}.parquet", split=SPLITS),
        images=directory("results/data/images"),
    params:
        data=section("data"),
    log:
        "results/logs/prepare_data.log",
    shell:
        "python -m steps.prepare_data --params {params.data:q} --out results/data > {log} 2>&1"
