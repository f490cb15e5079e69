# `make run` and `make test` are all a fresh machine needs; see README.md.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
PORT ?= 8000
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/portal
TEST_REDIS_URL ?= redis://127.0.0.1:6379
# Redis database numbers of the suite's cache, throttle counters and broker (another checkout's suite on the same
# machine picks three others).
TEST_REDIS_DBS ?= 14 15 13

.PHONY: install system-deps run test test-fast lint format bench messages translations clean

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

messages: install
	SECRET_KEY=build $(PY) manage.py compilemessages -v 0 --ignore=.venv

# Refresh the Simplified Chinese catalog from the code (file names only as locations, so line moves change nothing);
# then translate the new entries in locale/zh_Hans/LC_MESSAGES/django.po.
translations: install
	SECRET_KEY=build $(PY) manage.py makemessages -l zh_Hans --ignore=.venv --ignore=tests --ignore=bench \
		--add-location=file --no-obsolete

run: install
	PORT=$(PORT) scripts/dev-run

system-deps:
	scripts/system-deps

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The suite runs on the real PostgreSQL and Redis of this machine (scripts/services starts them if down).
TEST_ENV := SECRET_KEY=test-only-not-secret MARKING_KEY=test-only-marking-key-not-secret-0123456789 DATABASE_URL=$(TEST_DATABASE_URL) \
	CACHE_URL=$(TEST_REDIS_URL)/$(word 1,$(TEST_REDIS_DBS)) THROTTLE_CACHE_URL=$(TEST_REDIS_URL)/$(word 2,$(TEST_REDIS_DBS)) \
	CELERY_BROKER_URL=$(TEST_REDIS_URL)/$(word 3,$(TEST_REDIS_DBS)) \
	EMAIL_BACKEND=django.core.mail.backends.locmem.EmailBackend SECURE_COOKIES=0 SECURE_HSTS_SECONDS=0 SECURE_SSL_REDIRECT=0 \
	CELERY_TASK_ALWAYS_EAGER=1 \
	PORTAL_VAR_DIR=$(CURDIR)/var/test

# Three pytest-xdist workers on two cores (the suite waits on servers, workers and browsers about 40% of the time):
# the browser journeys in two chains, the other servers and workers in one, each chain in order on one worker, and
# everything else on whichever worker is free (tests/conftest.py groups them).
test: install system-deps lint messages
	scripts/services
	$(TEST_ENV) $(VENV)/bin/pytest -n 3 --dist loadgroup $(PYTEST_ARGS)

# The edit-test loop: everything but the slow tier, with no apt, lint or message steps first (the catalog is compiled
# only when it changed).
test-fast: install locale/zh_Hans/LC_MESSAGES/django.mo
	scripts/services
	$(TEST_ENV) $(VENV)/bin/pytest -n 2 -m "not slow" $(PYTEST_ARGS)

locale/zh_Hans/LC_MESSAGES/django.mo: locale/zh_Hans/LC_MESSAGES/django.po
	SECRET_KEY=build $(PY) manage.py compilemessages -v 0 --ignore=.venv

bench: install system-deps
	scripts/bench-all

clean:
	rm -rf var test-artifacts .pytest_cache
