# timemon — the two commands:  make run   (set up and start the agent)
#                               make test  (set up and pass the whole suite)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages whose real daemons and tools the tests start.
APT_PACKAGES := chrony linuxptp gpsd gpsd-clients prometheus iproute2 socat systemd chromium openssl
REQUIRED_BINARIES := chronyd chronyc ptp4l pmc gpsd gpsfake gpspipe prometheus promtool ip socat systemd-analyze chromium openssl
# A missing binary fails the suite instead of skipping (set to 0 to allow skips).
TIMEMON_REQUIRE_BINARIES ?= 1
export TIMEMON_REQUIRE_BINARIES

.PHONY: run test system-deps lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/timemon agent $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

# Installs the Debian packages the tests need when any binary is missing (as root,
# or through sudo), once: later runs find the binaries and skip apt entirely.
system-deps:
	@missing=""; for b in $(REQUIRED_BINARIES); do \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

test: system-deps $(VENV)/.installed-test
	$(BIN)/ruff check .
	PATH="$$PATH:/usr/sbin:/sbin" $(BIN)/pytest -q

bench: $(VENV)/.installed-test
	$(BIN)/python bench/ntp_precision.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
