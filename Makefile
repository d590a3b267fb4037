# foodcnn: `make report` (set up, run the whole study on the embedded data, render the report)
#          `make test`   (set up, run the tests)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.foodcnn-installed
PROFILE ?= demo
# notebooks at a time (each kernel gets cores/JOBS threads); empty: one per visible GPU, else 2 (1 on a 1-core machine)
JOBS    ?=
# a Food-101 tree to run on instead of the generated one (e.g. DATA=../shared/realfood64/food-101)
DATA    ?=
DATA_SET := $(if $(DATA),--set data_root=$(abspath $(DATA)))

.PHONY: setup report test bench data lab clean clean-runs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[dev,ray]"
	touch $(STAMP)

setup: $(STAMP)  ## virtual environment with pinned torch 2.14.1 / torchvision 0.29.1 and the project

data: setup  ## the embedded synthetic dataset in the Food-101 layout (data/food-101)
	$(PY) -m foodcnn data synth --out data

# exit status: 0 every row ran and the HTML and PDF were written; 4 the HTML without a PDF (one line says why);
# 1 a row failed (the report lists it)
report: $(if $(DATA),setup,data)  ## every catalogue row through papermill, then the report in reports/ (it lists failed rows too)
	$(PY) -m foodcnn batch --profile $(PROFILE) $(if $(JOBS),--jobs $(JOBS)) $(DATA_SET); status=$$?; \
	$(PY) -m foodcnn report --profile $(PROFILE) && exit $$status

test: setup  ## the test suite (no network, no GPU; builds its own tiny data)
	$(PY) -m pytest -q

bench: data  ## speed benchmarks: reference loop vs foodcnn (prints figures)
	$(PY) benchmarks/bench.py

lab: setup  ## JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks/

clean-runs:
	rm -rf runs reports

clean: clean-runs
	rm -rf $(VENV) data .cache
