# watershed — every target creates and fills its own virtual environment, so a fresh clone needs
# nothing but python3 (3.11 or newer).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@templates="$$(ls template.yaml management.yaml 2>/dev/null)"; \
	if [ -n "$$templates" ]; then echo "cfn-lint $$templates"; $(BIN)/cfn-lint $$templates; fi

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .aws-sam build
