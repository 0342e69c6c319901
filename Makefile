# The two commands of the README. The first use creates .venv with the CPU build of torch
# (pinned in constraints.txt: any other torch pulls GBs of CUDA wheels) and the project.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: run test smoke install browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[pipeline,test]"
	touch $@

## run: the whole pipeline on the embedded default (CPU, no downloads)
run: install
	snakemake --cores all

## smoke: the CI-sized pipeline
smoke: install
	snakemake --cores all --configfile params/smoke.yaml

## test: unit, property and end-to-end tests
test: install browser
	python -m pytest -q

# Headless Chromium (Debian's package) for the report's browser test; needs root, else that test skips
# (under CI=true it fails instead, so CI always exercises it).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium is not installed: the report's browser test will be skipped"

clean:
	rm -rf results .snakemake mlflow.db mlflow.db.lock mlflow_fallback mlruns
