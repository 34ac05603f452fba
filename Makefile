# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo down test test-fast lint bench install clean images

HUB := infra/jupyterhub
PROXY := $(HUB)/node_modules/.bin/configurable-http-proxy

# Create the venv if missing; reinstall when the package metadata or the pins change.
# JupyterHub's proxy comes from npm into infra/jupyterhub/node_modules (no -g); Prometheus
# (`mlplatform up --monitoring`) from Debian's package.
$(STAMP): setup.cfg pyproject.toml constraints.txt $(HUB)/package-lock.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,jupyter,spark]"
	bash scripts/ensure_package.sh npm command -v npm
	npm ci --prefix $(HUB) --no-audit --no-fund --loglevel=error
	bash scripts/ensure_package.sh prometheus command -v prometheus
	@touch $(STAMP)

install: $(STAMP)

EXAMPLES := examples/mmf_delivery examples/neomaril_credit

## demo: start MLflow + MLServer, register every model and example, serve them, query them.
## Leaves the stack running. The demo serves the code as it is: a model whose code changed
## is registered straight as champion (not challenger) and deploy switches to it.
demo: $(STAMP)
	$(BIN)/mlplatform up
	$(BIN)/mlplatform register --all --alias champion
	@for folder in $(EXAMPLES); do $(BIN)/mlplatform import $$folder --alias champion || exit 1; done
	$(BIN)/mlplatform deploy
	$(BIN)/python -m mlplatform.scripts.demo

## down: stop everything `make demo` started.
down:
	@if [ -x $(BIN)/mlplatform ]; then $(BIN)/mlplatform down; else echo "nothing installed, nothing running"; fi

## test: flake8, then the test suite against real MLflow, S3 and MLServer processes;
## fails if the suite left any untracked or modified file in the checkout.
test: $(STAMP)
	$(BIN)/flake8 .
	bash scripts/ensure_package.sh chromium command -v chromium
	bash scripts/ensure_package.sh postgresql sh -c 'ls /usr/lib/postgresql/*/bin/pg_ctl'
	bash scripts/ensure_package.sh prometheus command -v prometheus
	bash scripts/ensure_package.sh kubernetes-client command -v kubectl
	bash scripts/ensure_package.sh openjdk-17-jre-headless command -v java
	@git status --porcelain --ignored > $(VENV)/.status-before 2>/dev/null || true
	$(BIN)/python -m pytest -p no:cacheprovider --durations=25
	@bash scripts/check_clean.sh $(VENV)/.status-before

## test-fast: the unit tier only (no processes started), in seconds.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -m unit

## images: the platform image (infra/docker/Dockerfile; every role, no model inside), on
## python:3.11-slim or, where that cannot be pulled, a local debootstrap Debian base.
## IMAGES_FLAGS=--ci adds the stand-ins docker-compose.ci.yml uses (S3, PostgreSQL, Prometheus).
IMAGES_FLAGS ?=
images: $(STAMP)
	$(BIN)/python -m mlplatform.scripts.images $(IMAGES_FLAGS)

lint: $(STAMP)
	$(BIN)/flake8 .

## bench: the benchmarks, each measured side by side in one run (results go to docs/benchmarks.md).
bench: $(STAMP)
	$(BIN)/python bench/bench_parallel_workers.py
	$(BIN)/python bench/bench_onnx_vs_sklearn.py
	$(BIN)/python bench/bench_gateway.py
	$(BIN)/python bench/bench_hostile_uploads.py
	$(BIN)/python bench/bench_switch.py
	$(BIN)/python bench/bench_shadow.py
	$(BIN)/python bench/bench_mlflow_serve.py
	$(BIN)/python bench/bench_compose_batch.py  # needs Docker (make images IMAGES_FLAGS=--ci)

clean: down
	rm -rf .mlplatform mlserver-config
