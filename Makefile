# The two commands of the README. Both create the project's virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= laptop
DATASET ?=

.PHONY: run test smoke clean-runs browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

## make run: execute every notebook through papermill (PRESET=laptop by default) into runs/PRESET (publish a complete
## laptop run into RESULTS.md and figures/ with `python -m gclib publish`);
## DATASET=path runs the per-task notebooks on a real dataset folder (make run PRESET=paper DATASET=data/edges2shoes)
run: $(VENV)/.installed
	$(PY) -m gclib run --preset $(PRESET) $(if $(DATASET),--dataset-root $(DATASET))

## make test: the unit tests (with the browser test of notebook 04's widget) and, side by side on the second core,
## every notebook under nbval in smoke, in order (02 loads what 01 trained); the notebooks' report is printed after
## the unit tests', and the target fails when either fails
PYTEST := $(PY) -m pytest -p no:cacheprovider --durations=20
test: $(VENV)/.installed browser
	@mkdir -p runs; OMP_NUM_THREADS=1 $(PYTEST) notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=900 \
	  > runs/notebooks-test.log 2>&1 & notebooks=$$!; \
	OMP_NUM_THREADS=1 $(PYTEST) tests; unit=$$?; \
	wait $$notebooks; nb=$$?; echo; echo "=== the notebooks under nbval (runs/notebooks-test.log) ==="; \
	cat runs/notebooks-test.log; echo "unit tests: exit $$unit; notebooks: exit $$nb"; [ $$unit -eq 0 ] && [ $$nb -eq 0 ]

smoke: $(VENV)/.installed
	$(PY) -m gclib run --preset smoke

clean-runs:
	rm -rf runs

## make browser: Debian's chromium + chromedriver for tests/test_browser.py (installed as root with apt-get when
## missing; elsewhere that test is skipped and says why)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver (apt-get) for the browser test"; \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	  echo "could not install chromium: tests/test_browser.py will be skipped"; \
	else echo "chromium/chromedriver not found: tests/test_browser.py will be skipped"; fi
