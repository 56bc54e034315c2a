# Two commands do all the set-up: `make run` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch: the CPU build on machines without an NVIDIA GPU, the CUDA build with one.
# Override for another CUDA version or platform, e.g.
#   make run TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?=

.PHONY: run test test-fast native clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	./tools/install_torch.sh $(PY) "$(TORCH_VERSION)" "$(TORCH_INDEX)"
	$(PY) -m pip install --no-deps "tinysoundfont==0.3.7"   # the synth engine; see pyproject.toml
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

# the C++ CPU kernels: fused step, prefill WKV (built with ninja; a no-op when the cached build is current)
native: $(STAMP)
	$(PY) -m core.network.cpu_kernels

# check_qt_libs names the system packages Qt's X11 plugin lacks (it stops only when X11 would be used)
run: native
	$(PY) tools/check_qt_libs.py
	$(PY) main.py

test: native
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# the inner loop: everything but the tests marked slow (CI runs `make test`, all of them)
test-fast: native
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info
