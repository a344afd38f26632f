# Two commands a newcomer needs:  `make run` (set up + start the dashboard)
#                                 `make test` (set up + run the whole test suite)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Installed before requirements.txt so its `torch>=2.0` is already satisfied. An exact
# release lets pip take a local CPU wheel from its find-links where one exists, instead of
# the newest multi-GB CUDA build; elsewhere it is the same release from PyPI.
TORCH_SPEC ?= torch==2.13.0
PORT ?= 8501
TEST_WORKERS ?= 2

.PHONY: run test bench clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m streamlit run dashboard.py --server.port $(PORT)

# The tests that train run on TEST_WORKERS processes (most use one torch thread), while Chromium
# is installed if missing; the browser tests then run alone, so nothing else competes with the
# page they time. Both halves always run; the target fails if either did.
test: $(VENV)/.dev-installed
	$(PY) -m ruff check .
	bash scripts/ensure_chromium.sh & chromium=$$!; \
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not browser"; status=$$?; \
	wait $$chromium || status=1; \
	$(PY) -m pytest -m browser || status=1; \
	exit $$status

bench: $(VENV)/.installed
	$(PY) bench/monitor_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache
