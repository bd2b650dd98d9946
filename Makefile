# The two commands of the README:
#   make bench   set up (venv, deps, dataset) and run the default benchmark -> results/<run-id>/
#   make test    set up (plus headless Chromium for the report test) and run the test suite
VENV ?= .venv
ARGS ?=

.PHONY: setup bench test quick

setup:
	./scripts/setup.sh

bench: setup
	$(VENV)/bin/edgebench run $(ARGS)

quick: setup
	$(VENV)/bin/edgebench run --quick $(ARGS)

test:
	./scripts/setup.sh --browser
	$(VENV)/bin/python -m pytest $(ARGS)
