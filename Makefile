# agetdaq: the two set-up commands are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench bench-quick clean venv screenshots

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[gui,test,plots]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/agetdaq demo

test: $(STAMP) monitoring-tools
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

# every tab of the monitor from a real emulator + DAQ run (offscreen, ~4 min) -> docs/screenshots/
screenshots: $(STAMP)
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(BIN)/python tools/screenshots.py --out docs/screenshots

clean:
	rm -rf $(VENV) $(FLOORS) build *.egg-info .pytest_cache

# Reliability runs outside CI (docs/RELIABILITY.md): 10 kill -9 trials + a 10-minute memory soak
# at line rate, >= 1 000 000 fuzzed datagrams into a running acquisition, and 30 minutes of the
# monitoring stream checked frame by frame (docs/STREAM.md).
.PHONY: soak fuzz stream-soak
soak: $(STAMP)
	$(BIN)/python tools/soak.py --kills 10 --minutes 10

stream-soak: $(STAMP)
	$(BIN)/python tools/stream_soak.py --minutes 30

fuzz: $(STAMP)
	$(BIN)/python tools/fuzz.py --datagrams 1000000

# Debian's `prometheus` package gives promtool and the server that tests/test_deploy_monitoring.py
# uses; installed here when running as root with apt-get. Without it those tests skip, saying why.
.PHONY: monitoring-tools
monitoring-tools:
	@if ! command -v promtool >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's prometheus (promtool) for the monitoring tests"; \
		{ apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null 2>&1 \
		&& apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; }; } \
		|| echo "prometheus could not be installed: the monitoring tests will skip"; \
	fi

# Honest floors: every dependency (and the gui extra's) at exactly its lower bound in
# pyproject.toml, on the oldest Python requires-python admits (3.10: pyenv's, else python3.10 on
# PATH; PYFLOOR=... to choose), then a smoke run: emulator + an 8-second run with its metrics
# scraped + inspect + the monitor replaying the run offscreen (tools/floors.py).
FLOORS := .venv-floors
PYFLOOR ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) \
	$(shell command -v python3.10 2>/dev/null))
.PHONY: floors
floors:
	@test -n "$(PYFLOOR)" || { echo "floors: no Python 3.10 found; set PYFLOOR=/path/to/python3.10" >&2; exit 1; }
	rm -rf $(FLOORS)
	$(PYFLOOR) -m venv $(FLOORS)
	$(FLOORS)/bin/python -m pip install -q --upgrade pip
	$(FLOORS)/bin/python -c "import sys; assert sys.version_info[:2] == (3, 10), sys.version"
	$(FLOORS)/bin/python -m pip install -q "tomli==2.0"  # its floor; reads pyproject.toml
	$(FLOORS)/bin/python tools/floors.py pins gui > $(FLOORS)/floors.txt
	$(FLOORS)/bin/python -m pip install -q -r $(FLOORS)/floors.txt
	$(FLOORS)/bin/python -m pip install -q --no-deps -e .
	$(FLOORS)/bin/python tools/floors.py smoke gui
