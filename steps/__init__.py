"""Pipeline steps: one thin entry point per Snakemake rule (`python -m steps.<rule>`).

A step module imports only what parses and checks its arguments; the libraries its work needs
(torch, transformers, trl, mlflow, ...) are imported in main() after that, and only on the path
that uses them. Bad arguments fail in a fraction of a second, and a job that finds its work done
(a rollouts job whose caches all match) never pays for a model library (benchmarks/import_time.py).
"""
