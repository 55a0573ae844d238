# The two commands: `make preview` (offline render + policy check of STACK) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
REQUIREMENTS := requirements.txt requirements-dev.txt policies/requirements.txt constraints.txt

.PHONY: preview check test bench clean

$(VENV)/.installed: $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $@

preview: $(VENV)/.installed
	$(PY) -m preview render $(STACK)

check: $(VENV)/.installed
	$(PY) -m preview check $(STACK)

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m preview.bench

clean:
	rm -rf build $(VENV)
