# rmapcheck: every target sets up (or reuses) the virtual environment first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
N      ?= 2000

.PHONY: demo test bench conform fuzz clean browser screenshot

# the C walk is compiled by the install: a change to it installs again
$(STAMP): pyproject.toml setup.py $(wildcard src/rmapcheck/check/*.c)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rmapcheck demo

test: $(STAMP) browser
	$(PY) -m pytest

# Debian's chromium and chromedriver for tests/test_html_browser.py, installed
# when missing (as root, with apt-get); without them that test is skipped and
# says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium and chromium-driver for the browser test"; \
		(apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			chromium chromium-driver >/dev/null) \
		|| echo "warning: could not install chromium; the browser test will be skipped"; \
	else echo "warning: chromium and chromedriver missing (not root or no apt-get); the browser test will be skipped"; fi

# The README's picture of the HTML step-through: the 2026 mremap trace at the step of its finding.
screenshot: $(STAMP) browser
	mkdir -p build
	$(PY) -m rmapcheck replay linux-6.18.0-use-after-free-check_invariants-497a5d7d --quiet \
		--html build/mremap-2026.html >/dev/null
	$(PY) tests/browser.py build/mremap-2026.html 6 docs/html-step-through.png

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
