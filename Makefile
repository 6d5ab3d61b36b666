# The README's two commands are `make run` and `make test`; everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 6432

.PHONY: run test lint demo-data clean

$(BIN)/privacylens: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo-data: $(BIN)/privacylens
	$(BIN)/privacylens demo-data --out data/employees.parquet

run: demo-data
	$(BIN)/privacylens make-cert --out-dir var/tls
	$(BIN)/privacylens serve --policy policies/demo.yaml --ledger var/ledger.sqlite --host $(HOST) --port $(PORT) \
		--tls-cert var/tls/server.crt --tls-key var/tls/server.key

test: $(BIN)/privacylens
	@command -v psql >/dev/null || (apt-get update -qq && apt-get install -y -qq postgresql-client)
	$(BIN)/python -m pytest -q

lint: $(BIN)/privacylens
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var data
