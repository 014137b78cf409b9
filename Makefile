# espnet_ext: `make demo` runs the offline mini recipe, `make test` the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PKG_SRC := setup.py espnet_ext.pth $(shell find espnet_ext -name '*.py' 2>/dev/null)

.PHONY: install sysdeps test test-fast demo clean

install: $(VENV)/.pkg  ## venv with pinned deps + espnet_ext (re-installed when sources change)

$(VENV)/.deps: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=23,<25"
	$(PY) -m pip install ".[test]"
	# resemblyzer pulls the Python-2-era `typing` backport; the standard library
	# has it, and the stale copy breaks anything that puts site-packages first.
	$(PY) -m pip uninstall -y -q typing
	rm -rf build
	touch $@

# Not editable on purpose: the package ships espnet_ext.pth (registration in
# every interpreter, stock entry points and spawned workers included), which
# editable installs do not install.
$(VENV)/.pkg: $(VENV)/.deps $(PKG_SRC)
	$(PY) -m pip install -q --no-deps --force-reinstall .
	rm -rf build
	touch $@

sysdeps:  ## espeak-ng, sox, ffmpeg from Debian, only when missing
	@missing=""; for b in espeak-ng sox ffmpeg; do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq espeak-ng sox ffmpeg; \
	fi

test: install sysdeps  ## the whole suite, slow end-to-end tests included (what CI runs)
	$(PY) -m pytest tests

test-fast: install sysdeps
	$(PY) -m pytest -m "not slow" tests

demo: install sysdeps  ## the offline mini-corpus recipe, fresh machine to RESULTS.md
	cd egs2/mini_europarl/s2t1 && ./run.sh --preset demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
