"""What every step shares: argument parsing of params sections and CPU thread settings."""

from __future__ import annotations

import argparse
import logging

import torch
from pydantic import BaseModel, ValidationError


def parser(description: str) -> argparse.ArgumentParser:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return argparse.ArgumentParser(description=description)


def section(model: type[BaseModel]):
    """argparse type: a params section passed as JSON by the Snakemake rule, validated again here.

    argparse reports a plain ValueError as "invalid <type> value" alone; ArgumentTypeError keeps
    pydantic's message, which names each bad key and why.
    """

    def parse(text: str) -> BaseModel:
        try:
            return model.model_validate_json(text)
        except ValidationError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = model.__name__
    return parse


def set_threads(threads: int) -> None:
    """One job, `threads` cores: Snakemake schedules jobs side by side on the remaining ones."""
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
