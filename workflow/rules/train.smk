rule train:
    input:
        sft=manifest("results/models/sft"),
        train="results/data/train.parquet",
    output:
        model=directory("results/runs/{algo}-{method}-s{seed}"),
        manifest=manifest("results/runs/{algo}-{method}-s{seed}"),
    params:
        train=section("train"),
        # Only this run's method spec: editing another method's hyperparameters reruns nothing here.
        method=lambda wc: P.methods[wc.method].model_dump_json(),
        scoring=section("scoring"),
        model=section("model"),
    threads: 1
    log:
        "results/logs/train/{algo}-{method}-s{seed}.log",
    shell:
        "python -m steps.train --params {params.train:q} --method-spec {params.method:q}"
        " --scoring {params.scoring:q} --model-params {params.model:q}"
        " --algo {wildcards.algo} --method {wildcards.method} --seed {wildcards.seed}"
        " --sft results/models/sft --data results/data --out {output.model} --threads {threads} > {log} 2>&1"
