# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo lint test bench clean

install: $(STAMP)

# torch first and pinned: a loose torch would pull GBs of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python deploy/ci/install_kubectl.py $(BIN)
	touch $(STAMP)

demo: install
	$(BIN)/pixgen generate "A golden retriever running through a field of sunflowers on a sunny day" \
		--duration 5 --aspect-ratio 16:9 --quality 720p --seed 42 -o out/demo.mp4

# The check gate: lint and types before any test runs (config in pyproject.toml).
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# Every core (pytest-xdist, a module per worker at a time; tests/conftest.py starts the longest modules first).
# TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= auto
test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) out .cache .pytest_cache
