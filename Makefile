# The README's two commands are `make run` and `make test`; everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 6432
WORKERS ?= 2

.PHONY: run test lint demo-data clients clean

$(BIN)/privacylens: pyproject.toml
	$(PYTHON) -m venv $(VENV) || { $(PYTHON) -m pip install --quiet --user virtualenv && $(PYTHON) -m virtualenv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,spark]'
	touch $@

demo-data: $(BIN)/privacylens
	$(BIN)/privacylens demo-data --out-dir data

run: demo-data
	$(BIN)/privacylens make-cert --out-dir var/tls
	$(BIN)/privacylens ingest --dataset activity --from data/activity.csv --if-empty \
		--policy policies/demo.yaml --ledger var/ledger.sqlite --activity-store var/activity
	$(BIN)/privacylens serve --policy policies/demo.yaml --ledger var/ledger.sqlite --host $(HOST) --port $(PORT) \
		--tls-cert var/tls/server.crt --tls-key var/tls/server.key --metrics-port 9188 --workers $(WORKERS)

# Real clients the suite drives: psql, pgJDBC, Go lib/pq (Debian), node-postgres (npm); and the real
# Prometheus (dashboards' PromQL) and docker-compose (`config` validates docker-compose.yml).
# scripts/install-clients.sh installs only the tools that are missing (see docs/setup.md).
NODE_CLIENTS := tests/clients/node/node_modules/.package-lock.json

clients: $(NODE_CLIENTS)
	@bash scripts/install-clients.sh

$(NODE_CLIENTS): tests/clients/node/package-lock.json
	@bash scripts/install-clients.sh
	cd tests/clients/node && npm ci --silent --no-audit --no-fund
	@touch $@

test: $(BIN)/privacylens clients
	PRIVACYLENS_REQUIRE_CLIENTS=1 $(BIN)/python -m pytest -q

lint: $(BIN)/privacylens
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var data
