# Two commands: `make demo` and `make test`. Everything else is a helper.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Data for tests and the demo: ../shared/data when it exists (CI), else whatever the user set.
ifneq ($(wildcard ../shared/data),)
export OSTTP_DATA ?= $(abspath ../shared/data)
endif

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first and pinned: the CPU wheel on this machine; an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]' torch==2.13.0
	# norse without its declared torchvision (only its dataset modules import it; the index's torchvision
	# wheels are CUDA builds that fail beside the CPU torch): its NIR importer needs torch, nir, nirtorch
	$(BIN)/pip install -q --no-deps norse==1.1.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/osttp demo

test: $(STAMP)
	$(BIN)/python -m pytest -rs tests  # -rs: each skipped test with its reason

bench: $(STAMP)
	$(BIN)/python benchmarks/step_time.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
