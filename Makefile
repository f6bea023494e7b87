# watershed — every target creates and fills its own virtual environment, so a fresh clone needs
# nothing but python3 (3.11 or newer).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint venv browser demo clean build-OnboardingFunction build-RelayFunction \
	build-CanaryFunction

venv: $(STAMP)

# uv installs the same requirements as pip about twice as fast here (parallel downloads and
# bytecode compilation), which keeps a fresh `make demo` well under a minute. pip remains the
# fallback wherever uv cannot be installed.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	if $(BIN)/pip install --quiet --disable-pip-version-check uv; then \
		$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]'; \
	else \
		$(BIN)/pip install --quiet --upgrade pip && $(BIN)/pip install --quiet -e '.[dev]'; \
	fi
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.yaml management.yaml

# The audit report's browser test drives Debian's headless Chromium through its chromedriver
# (Selenium is told both paths, so it never downloads a browser). Installed here when missing;
# CI runs as root. Without root the browser test skips - unless CI is set, then it fails.
CHROMIUM     ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver

browser:
	@if [ -x "$(CHROMIUM)" ] && [ -x "$(CHROMEDRIVER)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "apt-get install chromium chromium-driver (browser test of the audit report)"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "chromium or chromedriver missing and apt-get not usable: the browser test will skip" >&2; \
	fi

test: lint browser
	$(BIN)/python -m pytest

# The whole pipeline on an embedded AWS (moto, in-process): `make demo ARGS="--regions 5 --accounts 10"`
demo: $(STAMP)
	$(BIN)/python -m sandbox $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .aws-sam build

# --- sam build (template.yaml: CodeUri ".", Metadata BuildMethod: makefile) --------------------
# SAM runs `make build-<LogicalId>` with ARTIFACTS_DIR set. Each function directory receives its
# own package and that package's runtime dependencies, nothing else: no tests, no docs, not the
# other function. <package>/requirements.txt is the complete list (installed with --no-deps): what
# the python3.13 runtime provides (boto3, botocore and their dependencies) is not vendored.
# Wheels are chosen for the Lambda platform (arm64, CPython 3.13), not for the build machine.
LAMBDA_PIP_FLAGS := --quiet --no-compile --no-deps --disable-pip-version-check \
	--platform manylinux2014_aarch64 --implementation cp --python-version 3.13 --only-binary=:all:

define lambda-package
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)" >&2; exit 1; }
	mkdir -p "$(ARTIFACTS_DIR)"
	rm -rf "$(ARTIFACTS_DIR)/$(1)"
	cp -R $(1) "$(ARTIFACTS_DIR)/$(1)"
	rm -f "$(ARTIFACTS_DIR)/$(1)/requirements.txt"
	find "$(ARTIFACTS_DIR)/$(1)" -name __pycache__ -prune -exec rm -rf {} +
	$(PYTHON) -m pip install $(LAMBDA_PIP_FLAGS) --target "$(ARTIFACTS_DIR)" -r $(1)/requirements.txt
	rm -rf "$(ARTIFACTS_DIR)/bin"
endef

build-OnboardingFunction:
	$(call lambda-package,onboarding)

build-RelayFunction:
	$(call lambda-package,relay)

# The scheduled canary ships the onboarding package (onboarding/canary/canary_handler.py).
build-CanaryFunction:
	$(call lambda-package,onboarding)
