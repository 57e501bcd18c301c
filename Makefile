# The project's two entry points. Each makes its own virtual environment from pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: test test-moodle demo lint venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,sandbox,postgres,redis]'
	touch $@

lint: venv
	$(BIN)/ruff check .

test: venv lint
	$(BIN)/python -m pytest

# Only the real-Moodle tier (tests/real_moodle/): needs php, PostgreSQL 15 (bash .ci/install-prereqs)
# and MENTORSYNC_TEST_MOODLE_SOURCE, a Moodle 4.5 .tgz or code tree (e.g. ../shared/moodle/moodle-4.5.tgz).
test-moodle: venv
	$(BIN)/python -m pytest -m real_moodle tests/real_moodle

demo: venv
	$(BIN)/mentorsync demo

clean:
	rm -rf $(VENV) var .pytest_cache
