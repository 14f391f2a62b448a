# rmapcheck: every target sets up (or reuses) the virtual environment first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
N      ?= 2000

.PHONY: demo test bench conform clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rmapcheck demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m rmapcheck bench

conform: $(STAMP)
	$(PY) -m rmapcheck conform -n $(N)

clean:
	rm -rf $(VENV) build src/*.egg-info
