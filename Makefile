# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The install is redone only when pyproject.toml changes, so repeated runs are fast.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEMO_STORE ?= demo-store
PYTEST_ARGS ?=

.PHONY: install system-deps demo test bench bench-serving clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# What the tests drive besides Python: Debian's chromium (the catalog's browser tests, through
# Playwright: no browser download) and kubectl (the Kubernetes manifests). .ci/run does the same.
system-deps:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium kubectl

demo: $(STAMP)
	MODELHUB_STORE=$(DEMO_STORE) $(BIN)/python -m hub.examples.demo
	$(BIN)/modelhub --store $(DEMO_STORE) serve --host 127.0.0.1 --port 8080

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/publish_pull.py
	$(BIN)/python benchmarks/http_pull.py

# Prediction serving against in-process TensorFlow, MLServer, BentoML and MLflow (see benchmarks/serving.py)
bench-serving: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/serving.py

clean:
	rm -rf $(VENV) $(DEMO_STORE) .pytest_cache
