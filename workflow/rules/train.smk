# accelerate's config files, found from any --directory through a variable: a path in the command
# itself would make every train job look changed when the checkout moves.
os.environ["TOKENCREDIT_ACCELERATE_CONFIGS"] = os.path.join(workflow.basedir, "workflow/accelerate")


def train_launcher():
    """`python`, or `accelerate launch` with train.distributed's config when a run needs one.

    Port 0: accelerate picks a free port, so train jobs side by side on one node do not collide.
    """
    if P.train.num_processes == 1 and P.train.distributed == "ddp":
        return "python"
    return (
        f"accelerate launch --config_file $TOKENCREDIT_ACCELERATE_CONFIGS/{P.train.distributed}.yaml"
        f" --num_processes {P.train.num_processes} --main_process_port 0"
    )


rule train:
    input:
        start=policy_input(START),
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
        launch=train_launcher(),
        start=policy_dir(START),
    # One core per process; each process runs one torch thread.
    threads: P.train.num_processes
    resources:
        **P.resources.train.snakemake(),
    log:
        "results/logs/train/{algo}-{method}-s{seed}.log",
    # exec: the trainer (or accelerate's launcher) replaces the job's shell, so a kill of the job reaches it
    # instead of orphaning it beside a rerun (steps.train also refuses a run another trainer holds).
    shell:
        "exec {params.launch} -m steps.train --params {params.train:q} --method-spec {params.method:q}"
        " --scoring {params.scoring:q} --model-params {params.model:q}"
        " --algo {wildcards.algo} --method {wildcards.method} --seed {wildcards.seed}"
        " --init {params.start} --data results/data --out {output.model} --threads 1 --gpus {resources.gpu} > {log} 2>&1"
