# Two commands set everything up on a fresh machine: `make repro` and `make test`.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: install repro smoke test bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# A test-only reference implementation; its own pins would downgrade numpy and torch.
	$(BIN)/python -m pip install -q --no-deps torchattacks==3.5.1
	touch $@

install: $(VENV)/.installed

repro: install  ## the default-profile benchmark
	[ -d .dvc ] || dvc init -q
	dvc repro

smoke: install  ## the whole pipeline on the smoke profile, in a scratch copy
	advgen smoke

test: install  ## every test, including an end-to-end smoke `dvc repro`
	python -m pytest -q tests

bench: install
	python benchmarks/bench_train.py

clean:
	rm -rf $(VENV)
