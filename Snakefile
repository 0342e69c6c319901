# tokencredit: data -> tiny VLM -> SFT -> weighted GRPO/DAPO -> cached rollouts -> grading, token scores -> report.
# Parameters come from params/default.yaml, overridden by --configfile / --config, and are
# validated before any job runs. Each rule passes only its own params section to its step.
import os

configfile: os.path.join(workflow.basedir, "params/default.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/rollouts.smk"
include: "workflow/rules/grade.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/report/summary.md",
        "results/report/metrics.json",
