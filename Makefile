# The two commands of the README. Both create the project's virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= laptop

.PHONY: run test smoke clean-runs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

## make run: execute every notebook through papermill (PRESET=laptop by default; runs/PRESET, figures/)
run: $(VENV)/.installed
	$(PY) -m gclib run --preset $(PRESET)

## make test: unit tests, then every notebook under nbval in the smoke preset
test: $(VENV)/.installed
	$(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

smoke: $(VENV)/.installed
	$(PY) -m gclib run --preset smoke

clean-runs:
	rm -rf runs
