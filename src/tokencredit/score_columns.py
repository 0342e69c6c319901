"""Column names of the token score tables: tokencredit.scoring writes them, tokencredit.analysis reads them.

A module of its own so that reading the tables pulls in neither torch nor transformers.
"""

SIGNAL_PREFIX, WEIGHT_PREFIX = "signal.", "weight."


def signal_column(signal: str, counterfactual: str | None = None) -> str:
    return f"{SIGNAL_PREFIX}{signal}" if counterfactual is None else f"{SIGNAL_PREFIX}{signal}.{counterfactual}"


def weight_column(method: str) -> str:
    return f"{WEIGHT_PREFIX}{method}"
