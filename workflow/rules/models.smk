if P.model.path is None:

    rule build_base:
        input:
            train="results/data/train.parquet",
        output:
            model=directory("results/models/base"),
            manifest=manifest("results/models/base"),
        params:
            model=section("model"),
        log:
            "results/logs/build_base.log",
        shell:
            "python -m steps.build_base --params {params.model:q} --train {input.train} --out {output.model} > {log} 2>&1"


rule sft:
    input:
        base=policy_input("base"),
        train="results/data/train.parquet",
        validation="results/data/validation.parquet",
    output:
        model=directory("results/models/sft"),
        manifest=manifest("results/models/sft"),
    params:
        sft=section("sft"),
        model=section("model"),
        base=policy_dir("base"),
    threads: 2
    resources:
        **P.resources.sft.snakemake(),
    log:
        "results/logs/sft.log",
    shell:
        "python -m steps.sft --params {params.sft:q} --model-params {params.model:q} --base {params.base}"
        " --data results/data --out {output.model} --threads {threads} --gpus {resources.gpu} > {log} 2>&1"
