"""prepare_data: the synthetic splits with ground-truth token roles."""

from pathlib import Path

from steps.common import parser, section
from tokencredit.params import DataParams
from tokencredit.synthetic import write_splits
from tokencredit.tracking import job_run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--params", type=section(DataParams), required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    with job_run("prepare_data", params={"data": args.params.model_dump()}):
        write_splits(args.params, args.out)


if __name__ == "__main__":
    main()
