# rmapcheck: every target sets up (or reuses) the virtual environment first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
N      ?= 2000

.PHONY: demo test bench conform fuzz clean

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

# N malformed scenario files and traces (a quarter each: structured and
# byte-level mutations, for run and replay), drawn at random.
fuzz: $(STAMP)
	RMAPCHECK_FUZZ=$(N) $(PY) -m pytest -q -s -p no:cacheprovider tests/test_fuzz.py -k test_fuzz_

clean:
	rm -rf $(VENV) build src/*.egg-info
