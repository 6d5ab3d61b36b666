# The README's two commands are `make run` and `make test`; everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 6432

.PHONY: run test lint demo-data clients clean

$(BIN)/privacylens: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo-data: $(BIN)/privacylens
	$(BIN)/privacylens demo-data --out-dir data

run: demo-data
	$(BIN)/privacylens make-cert --out-dir var/tls
	$(BIN)/privacylens serve --policy policies/demo.yaml --ledger var/ledger.sqlite --host $(HOST) --port $(PORT) \
		--tls-cert var/tls/server.crt --tls-key var/tls/server.key --metrics-port 9188

# Real clients the suite drives: psql, pgJDBC, Go lib/pq (Debian), node-postgres (npm); and the real
# Prometheus (dashboards' PromQL) and docker-compose (`config` validates docker-compose.yml).
CLIENT_PACKAGES := postgresql-client libpostgresql-jdbc-java golang-go golang-github-lib-pq-dev default-jre-headless nodejs npm \
	prometheus docker-compose

clients:
	@(command -v psql && command -v java && command -v go && command -v npm && test -f /usr/share/java/postgresql.jar \
	  && test -d /usr/share/gocode/src/github.com/lib/pq && command -v prometheus && command -v docker-compose) >/dev/null \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CLIENT_PACKAGES))
	cd tests/clients/node && npm ci --silent --no-audit --no-fund

test: $(BIN)/privacylens clients
	PRIVACYLENS_REQUIRE_CLIENTS=1 $(BIN)/python -m pytest -q

lint: $(BIN)/privacylens
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var data
