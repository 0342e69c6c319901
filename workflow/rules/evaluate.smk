rule evaluate:
    input:
        policy=lambda wc: manifest(policy_dir(wc.policy)),
        split="results/data/{split}.parquet",
    output:
        "results/eval/{policy}/{split}.json",
    params:
        eval=section("eval"),
        model=section("model"),
        policy=lambda wc: policy_dir(wc.policy),
    threads: 1
    log:
        "results/logs/eval/{policy}-{split}.log",
    shell:
        "python -m steps.evaluate --params {params.eval:q} --model-params {params.model:q}"
        " --policy-name {wildcards.policy} --policy {params.policy} --data results/data --split {wildcards.split}"
        " --out {output} --threads {threads} > {log} 2>&1"
