"""build_base: the tiny VLM (tokenizer trained on the synthetic text, processor, random weights)."""

from pathlib import Path

from steps.common import parser, section
from tokencredit.params import ModelParams
from tokencredit.tracking import job_run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--params", type=section(ModelParams), required=True)
    p.add_argument("--train", type=Path, required=True, help="train split parquet: the tokenizer's corpus")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    import pandas as pd

    from tokencredit.manifest import write_manifest
    from tokencredit.tiny_vlm import build_base

    train = pd.read_parquet(args.train, columns=["question", "target"])
    corpus = [*train["question"], *train["target"]]
    with job_run("build_base", params={"model": args.params.model_dump()}):
        build_base(args.params, corpus, args.out)
        write_manifest(args.out)


if __name__ == "__main__":
    main()
