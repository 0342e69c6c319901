if P.model.path is None:

    rule build_base:
        input:
            train="results/data/train.parquet",
        output:
            directory("results/models/base"),
        params:
            model=section("model"),
        log:
            "results/logs/build_base.log",
        shell:
            "python -m steps.build_base --params {params.model:q} --train {input.train} --out {output} > {log} 2>&1"


rule sft:
    input:
        base=base_model(),
        train="results/data/train.parquet",
        validation="results/data/validation.parquet",
    output:
        directory("results/models/sft"),
    params:
        sft=section("sft"),
        model=section("model"),
    threads: 2
    log:
        "results/logs/sft.log",
    shell:
        "python -m steps.sft --params {params.sft:q} --model-params {params.model:q} --base {input.base}"
        " --data results/data --out {output} --threads {threads} > {log} 2>&1"
