# ahtwist: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ahtwist-installed
TWISTD_ARGS ?=

.PHONY: install run test lint typecheck bench clean minify-client bundle-client docs

install: $(STAMP)

# A PEP 660 editable install maps the package but hides twisted/plugins/ from
# Twisted's plugin scanner, which looks for twisted/plugins directories on
# sys.path.  The .pth file puts the checkout itself on sys.path, so
# `twistd ahtwist` finds twisted/plugins/ahtwist_plugin.py.
$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
	  | xargs -I{} sh -c 'echo "$(CURDIR)" > {}/ahtwist-checkout.pth'
	rm -f twisted/plugins/dropin.cache
	touch $(STAMP)

run: install
	$(BIN)/twistd -n --pidfile= ahtwist $(TWISTD_ARGS)

# lint and typecheck first: a landing checked with `make test` is checked as CI checks it
test: install lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check ahtwist tests bench twisted

# mypy on ahtwist/ (settings in pyproject.toml)
typecheck: install
	$(BIN)/mypy


bench: install
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/run_all.py

# docs/configuration.md's key tables are generated from etc/ahtwist.toml
# (tests/test_reference_pages.py fails when they are stale).
docs: install
	$(BIN)/python docs/make_configuration.py

# public/javascript/ActionheroWebsocketClient.js (ActionHero 18-19's file name and API)
# carries a copy of actionheroClient.js made by this target; a test checks it is current.
bundle-client: install
	$(BIN)/python tests/client_bundle.py

# The committed public/javascript/actionheroClient.min.js is made by this target
# (terser from the npm registry through npx; needs node).  Its banner records the
# sha256 of the source it was built from; a test checks they still match.
CLIENT_JS := public/javascript/actionheroClient.js
TERSER := terser@5.51.4
minify-client:
	sum=$$(sha256sum $(CLIENT_JS) | cut -d' ' -f1); \
	{ echo "/*! actionheroClient.min.js: $(TERSER) build of actionheroClient.js sha256=$$sum (MIT) */"; \
	  npx --yes $(TERSER) $(CLIENT_JS) --compress --mangle --ecma 2017 --comments false; \
	} > public/javascript/actionheroClient.min.js.tmp
	mv public/javascript/actionheroClient.min.js.tmp public/javascript/actionheroClient.min.js

clean:
	rm -rf $(VENV) build dist *.egg-info twisted/plugins/dropin.cache
