# The two commands: `make demo` and `make test`. Each creates the Python 3.10 venv from requirements.lock first.
SHELL := /bin/bash
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PY := $(VENV)/bin/python
DEMO := build/demo
PORT ?= 8080
# Debian's chromium, which the web page tests drive through playwright (it downloads no browser here).
CHROMIUM := /usr/bin/chromium
# Debian's redis-server, which the tests start on 127.0.0.1 as the shared online store (Memorystore in the cloud).
REDIS_SERVER := /usr/bin/redis-server
APT := $(shell [ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get
# TFX 1.16 needs Python 3.10: pyenv's if there is one, else python3.10 on the PATH.
PYTHON310 ?= $(shell for p in $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10 $$(command -v python3.10); do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo "$$p" && break; done)
export TF_USE_LEGACY_KERAS := 1
export UV_PYTHON_DOWNLOADS := never
export PYTHONDONTWRITEBYTECODE := 1
# TensorFlow's C++ info and end-of-data warnings drown the output.
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test test-fast venv browser store-server lock clean

demo: venv
	$(VENV)/bin/recsys data sample --out $(DEMO)/data
	$(VENV)/bin/recsys pipeline run --data $(DEMO)/data --workdir $(DEMO)/work
	$(PY) -m proxy.demo --model-base $(DEMO)/work/serving/recsys --data $(DEMO)/data \
		--feedback-db $(DEMO)/work/feedback.sqlite --port $(PORT)

test: venv browser store-server
	$(PY) -m pytest

# The fast tier (tests/README.md): under a minute, no pipeline run, no browser.
# Only the files that hold fast tests are collected, so no other test module's imports (TFX) are paid for.
test-fast: venv
	$(PY) -m pytest -m fast $$(grep -l "pytest.mark.fast" tests/test_*.py)

# Installs chromium only where it is missing (a clean CI machine); refreshes the package lists only if needed.
browser:
	@test -x $(CHROMIUM) || $(APT) install -y chromium chromium-driver \
		|| { $(APT) update && $(APT) install -y chromium chromium-driver; }

store-server:
	@test -x $(REDIS_SERVER) || $(APT) install -y redis-server \
		|| { $(APT) update && $(APT) install -y redis-server; }

venv: $(VENV)/.installed

$(UV):
	python3 -m venv $(TOOLS) && $(TOOLS)/bin/pip install -q uv==0.13.9

# The packages' bytecode compiled once here: with PYTHONDONTWRITEBYTECODE (above) nothing writes it later, and
# every process (each pipeline run, each Vertex task, each test's server) compiled TensorFlow's and TFX's
# sources again.
$(VENV)/.installed: requirements.lock setup.py | $(UV)
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found (TFX 1.16 needs it): install it, e.g. pyenv install 3.10"; exit 1; }
	test -x $(PY) || $(UV) venv --seed --python "$(PYTHON310)" $(VENV)
	$(UV) pip sync --python $(PY) --compile-bytecode requirements.lock
	$(UV) pip install --python $(PY) --no-deps -e .
	touch $@

lock: | $(UV)
	$(UV) pip compile --python-version 3.10 --python-platform x86_64-unknown-linux-gnu requirements.in -o requirements.lock

clean:
	rm -rf build
