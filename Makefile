# The two commands of the README: `make run` and `make test`. Each sets up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run run-cluster test test-compiled lint bench bench-pubsub install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[fast,dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m examples.chat

# The chat on two processes sharing a Redis stream, behind nginx (needs redis-server, nginx).
run-cluster: $(STAMP)
	$(PY) -m examples.chat.cluster --workers=2 --port=8888

# The suite runs on the default loop (uvloop when installed), then again on plain asyncio.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests
	SQUALL_NO_UVLOOP=1 $(PY) -m pytest -q -n 2 tests --deselect tests/test_chat_browser.py

# The suite against a copy whose HTTP/1 core is compiled with mypyc (needs a C compiler);
# an experiment on the way to a faster core, not part of `make test`.
test-compiled: $(STAMP)
	$(PY) -m bench.compiled --test

lint: $(STAMP)
	$(VENV)/bin/ruff check squall tests
	$(VENV)/bin/mypy squall

# The HTTP benchmarks drive the servers with wrk (Debian's package), installed here if missing.
bench: $(STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk; } \
	  || { echo "make bench needs wrk (apt-get install wrk)"; exit 1; }
	$(PY) -m pip install -q -e '.[fast,dev,bench]'
	$(PY) -m bench

# Broadcast fan-out and Redis throughput (squall.pubsub vs Tornado and websockets).
bench-pubsub: $(STAMP)
	$(PY) bench/bench_pubsub.py

clean:
	rm -rf $(VENV) build *.egg-info
