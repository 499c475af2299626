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

test: $(STAMP)
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
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Reliability runs outside CI (docs/RELIABILITY.md): 10 kill -9 trials + a 10-minute memory soak
# at line rate, and >= 1 000 000 fuzzed datagrams into a running acquisition.
.PHONY: soak fuzz
soak: $(STAMP)
	$(BIN)/python tools/soak.py --kills 10 --minutes 10

fuzz: $(STAMP)
	$(BIN)/python tools/fuzz.py --datagrams 1000000
