# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when missing and
# install the project into it with the pinned versions of requirements/constraints.txt.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# CPU build of torch (the project's tested version). A GPU user may set TORCH to their own build.
TORCH  ?= torch==2.13.0
PINS   := -c requirements/constraints.txt
STAMP  := $(VENV)/.installed
PORT   ?= 8000
HOST   ?= 127.0.0.1
STUDIES ?= .run/studies
PYTEST_ARGS ?=

.PHONY: install run test evaluate-sample clean-run lint

$(STAMP): setup.py requirements/*.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=23.2" setuptools wheel
	$(PIP) install -q $(PINS) "$(TORCH)"
	$(PIP) install -q $(PINS) -e ".[app,io,cohort,dev]"
	# MONAI Label without its sam2 dependency (an sdist whose build pulls a CUDA torch).
	$(PIP) install -q $(PINS) --no-deps monailabel==0.8.5
	@touch $(STAMP)
	@echo "installed into $(VENV)"

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Until the MONAI Label app lands, `make run` scores the bundled sample study.
run: $(STAMP)
	$(VENV)/bin/cineprop evaluate data/sample --method flow --support first --overlays .run/overlays --out .run/sample-report.json

clean-run:
	rm -rf .run
