# `make test` and `make run` work on a fresh clone: they create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test build lock release lint run bench abuse clean

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: $(VENV)/.installed
	contrib/run-tests.sh

build: $(VENV)/.installed
	contrib/build-bin.sh build

# Re-pin the single file's wheels (contrib/singlefile.lock) after changing install_requires.
lock: $(VENV)/.installed
	$(PY) contrib/singlefile.py lock

# Needs WIRELEAP_RELEASE_KEY and WIRELEAP_RELEASE_URL: see contrib/release.sh and the README.
release: $(VENV)/.installed
	contrib/release.sh build/release

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

run: $(VENV)/.installed
	$(PY) -m wireleap_relay.testing

bench: $(VENV)/.installed
	$(PY) -m wireleap_relay.testing bench

# Attacks on a relay, load and kill -9 trials, with the figures docs/reliability.md keeps.
abuse: $(VENV)/.installed
	$(PY) -m wireleap_relay.testing abuse

clean:
	rm -rf build $(VENV) *.egg-info
