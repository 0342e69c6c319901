"""Pipeline steps: one thin entry point per Snakemake rule (`python -m steps.<rule>`)."""
