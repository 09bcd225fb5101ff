# The two commands of the README: `make run` and `make test`. Each sets up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run run-cluster test build lint bench bench-pubsub install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[fast,dev]'
	touch $(STAMP)

install: $(STAMP)

# The compiled request path (setup.py, Cython): `pip install -e` builds it once; this brings
# it up to date with edited sources (only changed modules are compiled again). Without a
# C compiler or Cython it does nothing and squall runs as pure Python.
build: $(STAMP)
	@$(PY) setup.py -q build_ext --inplace 2>&1 | grep -v -e '^running' -e '^copying' || true

run: $(STAMP)
	$(PY) -m examples.chat

# The chat on two processes sharing a Redis stream, behind nginx (needs redis-server, nginx).
run-cluster: $(STAMP)
	$(PY) -m examples.chat.cluster --workers=2 --port=8888

# The suite runs twice: compiled request path on the default loop (uvloop when installed),
# then the pure-Python modules (SQUALL_NO_EXTENSIONS) on plain asyncio.
test: build
	$(PY) -c 'import squall; print("compiled request path:", squall.speedups_enabled())'
	$(PY) -m pytest -q -n 2 tests
	SQUALL_NO_EXTENSIONS=1 SQUALL_NO_UVLOOP=1 $(PY) -m pytest -q -n 2 tests --deselect tests/test_chat_browser.py

lint: $(STAMP)
	$(VENV)/bin/ruff check squall tests
	$(VENV)/bin/mypy squall

# The HTTP benchmarks drive the servers with wrk (Debian's package), installed here if missing.
bench: build
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk; } \
	  || { echo "make bench needs wrk (apt-get install wrk)"; exit 1; }
	$(PY) -m pip install -q -e '.[fast,dev,bench]'
	$(PY) -m bench

# Broadcast fan-out and Redis throughput (squall.pubsub vs Tornado and websockets).
bench-pubsub: $(STAMP)
	$(PY) bench/bench_pubsub.py

clean:
	rm -rf $(VENV) build *.egg-info
	find squall -name '*.so' -delete -o -name '*.c' -delete
