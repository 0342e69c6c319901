"""build_base: the tiny VLM (tokenizer trained on the synthetic text, processor, random weights)."""

from pathlib import Path

from steps.common import parser, section
from tokencredit.params import ModelParams
from tokencredit.run_record import write_run_record
from tokencredit.tracking import job_run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--params", type=section(ModelParams), required=True)
    p.add_argument("--train", type=Path, required=True, help="train split parquet: the tokenizer's corpus")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    import pandas as pd

    from tokencredit.claim_probes import parse_claims, probe_corpus
    from tokencredit.manifest import write_manifest
    from tokencredit.tiny_vlm import build_base

    train = pd.read_parquet(args.train)
    claims = [parse_claims(cell) for cell in train["claims"]] if "claims" in train else []
    corpus = [*train["question"], *train["target"], *probe_corpus(claims)]
    params = {"model": args.params.model_dump()}
    with job_run("build_base", params=params, tags={"policy": "base"}, run_name="base") as run:
        build_base(args.params, corpus, args.out)
        write_manifest(args.out)
        write_run_record(args.out, "base", params, run.run_id)


if __name__ == "__main__":
    main()
