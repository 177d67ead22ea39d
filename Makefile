# The two commands: `make demo` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# PyTorch (the train extra) is the local CPU build torch==2.13.0: constraints.txt holds it to that.
CONSTRAINTS := -c constraints.txt

.PHONY: demo test lint bench install install-dev browser clean

# make demo: the base install, which classifies without PyTorch.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(CONSTRAINTS) -e .
	touch $@

# make test: everything, training (PyTorch) and the Ray engine included.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q $(CONSTRAINTS) -e '.[train,dev,ray]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/genrekit demo --out demo-output

# Debian's Chromium for tests/test_e2e_browser.py (Playwright drives it); installed once, as root on CI.
browser:
	test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)

test: $(VENV)/.installed-dev browser lint
	$(PY) -m pytest -q

# Static checks of src/ (configured in pyproject.toml): part of `make test`.
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo-output build dist *.egg-info src/*.egg-info
