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
	$(PIP) install -q $(PINS) -e ".[app,io,cohort,dev,peers]"
	# MONAI Label without its sam2 dependency (an sdist whose build pulls a CUDA torch).
	$(PIP) install -q $(PINS) --no-deps monailabel==0.8.5
	@touch $(STAMP)
	@echo "installed into $(VENV)"

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# `make run`: the MONAI Label server with the cineprop app on http://$(HOST):$(PORT), serving a copy of
# the bundled sample study in $(STUDIES) (each cine with 2 painted support frames per structure, so a
# first infer works without uploading anything; existing files there are kept). More options:
#   make run APP_CONF="--conf method flow --conf flag_threshold 0.6" PORT=8001
# The venv's interpreter runs MONAI Label (its `monailabel` script would use whatever python is on PATH).
APP_CONF ?=
SAMPLE_LABELS ?= right ventricle,myocardium,left ventricle
run: $(STAMP)
	$(PY) tools/prepare_studies.py data/sample $(STUDIES)
	$(PY) -m monailabel.main start_server --app monailabel_app --studies $(STUDIES) --host $(HOST) --port $(PORT) \
		--conf labels "$(SAMPLE_LABELS)" $(APP_CONF)

clean-run:
	rm -rf .run
