# flowship: two commands on a fresh machine.
#   make demo   set-up, then the example job end to end (local Kafka broker + Flink mini-cluster)
#   make test   set-up, then lint, type checks and the whole test suite
# Set-up is idempotent: the venv is rebuilt only when pyproject.toml, setup.py or the version
# (flowship/__init__.py) changes; Maven is incremental.
# Also: `make wheel` builds the sdist and the wheel (carrying flowship's jars) into dist/.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flowship-installed
JARS_STAMP := jvm/provenance/target/connector/.stamp
JVM_SOURCES := $(shell find jvm -name pom.xml -o -name '*.java' 2>/dev/null | grep -v /target/)
PYTEST_ARGS ?=

.PHONY: setup venv jars demo test test-fast lint typecheck docs wheel clean

setup: venv jars

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py flowship/__init__.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "flowship needs Python >= 3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

jars: $(JARS_STAMP)

$(JARS_STAMP): $(JVM_SOURCES)
	@command -v mvn >/dev/null || { echo "Maven (mvn) is required to resolve the JVM jars"; exit 1; }
	@command -v java >/dev/null || { echo "A Java 17 runtime is required"; exit 1; }
	mvn --quiet --batch-mode -f jvm/pom.xml package
	@touch $@

demo: setup
	$(PY) examples/demo.py

lint: venv
	$(VENV)/bin/ruff check flowship tests examples bench setup.py
	$(VENV)/bin/ruff format --check flowship setup.py

typecheck: venv
	$(VENV)/bin/mypy flowship bench

test: setup lint typecheck
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

test-fast: venv
	$(PY) -m pytest -m "not jvm" -q $(PYTEST_ARGS)

wheel: venv
	$(PY) -m build --outdir dist .

docs: venv
	$(PY) -m pip install --quiet 'mkdocs>=1.6'
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) jvm/*/target build dist flowship.egg-info .flowship .pytest_cache .mypy_cache .ruff_cache
