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

# uv installs the rest from PyPI: the releases pip would pick, downloaded in parallel, with their
# bytecode compiled on both cores (a clean set-up took 187 s with pip alone, 55-75 s this way). pip
# takes over wherever uv cannot install. torch goes through pip, which reads this machine's pip
# configuration (find-links, caps), and is compiled here: uv compiles only what it installs.
install = $(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode $(1) || $(PY) -m pip install --quiet $(1)
TORCH_DIR := "import importlib.util as u; print(u.find_spec('torch').submodule_search_locations[0])"

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv>=0.4" || echo "uv could not be installed: pip installs everything"
	$(PY) -c "import torch" 2>/dev/null || { $(PY) -m pip install --quiet --no-compile "$(TORCH_SPEC)" && \
	  { $(PY) -m compileall -q -j 0 "$$($(PY) -c $(TORCH_DIR))" >/dev/null || true; }; }
	$(call install,-r requirements.txt)
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(call install,-r requirements-dev.txt)
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
