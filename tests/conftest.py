import os

import pytest

from tests.factories import UserFactory
from tests.support import database

# Fixtures that start a server, a worker or a browser: a test asking for one is in the slow tier (`make test` runs
# every tier; `make test-fast` leaves it out).
SERVERS = {
    "live_server",
    "nanio",
    "s3_storage",
    "redis_server",
    "celery_broker",
    "celery_worker",
    "worker_env",
    "gunicorn",
    "demo_idp",
    "browser",
    "page",
}
BROWSER = {"browser", "page"}


# The longest browser journeys: one chain of browser tests, the rest another, so two workers share them.
LONG_JOURNEYS = {"tests.test_pages_browser", "tests.test_stewardship_browser", "tests.test_sign_in_browser"}


def _group(item, used: set) -> str:
    if not BROWSER & used:
        return "serial"
    return "browser-long" if item.module.__name__ in LONG_JOURNEYS else "browser"


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if SERVERS & used:
            item.add_marker(pytest.mark.slow)
            # Under `pytest -n 3 --dist loadgroup` (make test) the browser journeys run in two chains and the other
            # servers and workers in one, each chain one test after another on one worker (each worker has its own
            # database, Redis databases, private Redis and ports); the rest, slow in-process tests (the attack
            # matrix) included, goes to whichever worker is free.
            item.add_marker(pytest.mark.xdist_group(_group(item, used)))
            continue
        # A fixture parametrized by server (tests/test_hostile_input.py's `portal`) names it in its parameters:
        # slow, and on whichever worker is free (short requests to a server of its own).
        params = getattr(getattr(item, "callspec", None), "params", {})
        if any(isinstance(value, str) and value in SERVERS for value in params.values()):
            item.add_marker(pytest.mark.slow)


def _own_redis_databases() -> None:
    """Each pytest-xdist worker after the first counts in Redis databases of its own (three below the first
    worker's, which are the ones the Makefile names), and so do the servers and workers it starts: tests clear
    their databases, and must not clear another worker's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or worker == "gw0":
        return
    from django.conf import settings
    from django.core.cache import caches

    shift = 3 * int(worker[2:])

    def moved(url: str) -> str:
        base, _, db = url.rpartition("/")
        return f"{base}/{(int(db) - shift) % 16}" if url.startswith("redis://") and db.isdigit() else url

    for config in settings.CACHES.values():
        if isinstance(config.get("LOCATION"), str):
            config["LOCATION"] = moved(config["LOCATION"])
    caches.__dict__.pop("settings", None)
    settings.CELERY_BROKER_URL = moved(settings.CELERY_BROKER_URL)
    for name in ("CACHE_URL", "THROTTLE_CACHE_URL", "CELERY_BROKER_URL"):  # what subprocesses inherit
        if name in os.environ:
            os.environ[name] = moved(os.environ[name])


_own_redis_databases()
database.quick_flush()


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_modify_db_settings):
    """Each worker's test database: a copy of the migrated template when one exists for this schema, migrated
    (and kept as the template) otherwise (tests/support/database.py); dropped at the end."""
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases
    from pytest_django.fixtures import _get_databases_for_setup

    aliases, serialized = _get_databases_for_setup(request.session.items)
    verbosity = request.config.option.verbose
    with django_db_blocker.unblock():
        cloned = database.setup_from_template(connection, verbosity)
        config = setup_databases(
            verbosity=verbosity, interactive=False, aliases=aliases, serialized_aliases=serialized, keepdb=True
        )
        if not cloned:
            database.keep_template(connection)
    yield
    with django_db_blocker.unblock():
        teardown_databases(config, verbosity=verbosity)


# Marked releases need a marking key; `make test` sets one, and so does this for a bare pytest (subprocess servers
# inherit the environment).
TEST_MARKING_KEY = "test-only-marking-key-not-secret-0123456789"
os.environ.setdefault("MARKING_KEY", TEST_MARKING_KEY)


@pytest.fixture(autouse=True)
def _marking_key(settings):
    settings.MARKING_KEY = settings.MARKING_KEY or os.environ["MARKING_KEY"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Production keeps Django's PBKDF2 default; tests create hundreds of accounts.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _own_event_inserts(settings):
    """Requests insert their download events themselves in tests (tests/test_group_commit.py covers the shared
    commit, and every test run of real gunicorn processes uses it): a writer thread's connection would outlive
    the test database."""
    settings.DOWNLOAD_EVENT_GROUP_COMMIT = False


@pytest.fixture(autouse=True)
def _fresh_caches(settings):
    from django.core.cache import caches

    for alias in settings.CACHES:
        caches[alias].clear()
    from access.gate import loader as decision_cache
    from access.storage import get_storage

    decision_cache.forget()

    get_storage.cache_clear()
    yield
    get_storage.cache_clear()


@pytest.fixture
def local_storage(settings, tmp_path):
    settings.STORAGE_BACKEND = "local"
    settings.LOCAL_STORAGE_DIR = tmp_path / "storage"
    from access.storage import get_storage

    get_storage.cache_clear()
    return get_storage()


@pytest.fixture(scope="session")
def nanio():
    from tests.support.nanio import start_nanio, stop_nanio

    server = start_nanio()
    yield server
    stop_nanio(server)


@pytest.fixture
def s3_storage(settings, nanio):
    settings.STORAGE_BACKEND = "s3"
    settings.S3_BUCKET = nanio.bucket
    settings.S3_ENDPOINT_URL = nanio.endpoint_url
    settings.S3_REGION = nanio.region
    settings.S3_ACCESS_KEY_ID = nanio.access_key
    settings.S3_SECRET_ACCESS_KEY = nanio.secret_key
    settings.S3_ADDRESSING_STYLE = "path"
    settings.S3_PREFIX = ""
    from access.storage import get_storage

    get_storage.cache_clear()
    return get_storage()


@pytest.fixture
def alice(db):
    return UserFactory(email="alice@uni.example")


@pytest.fixture
def bob(db):
    return UserFactory(email="bob@lab.example")


@pytest.fixture(scope="session")
def _private_redis():
    from tests.support.processes import RedisServer

    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_server(_private_redis):
    """A private redis-server, running and empty: the broker tests share one per session (a fault test may stop
    and start it; it comes back on the same port)."""
    import redis

    if _private_redis.process is None or _private_redis.process.poll() is not None:
        _private_redis.start()
    client = redis.Redis.from_url(_private_redis.url)
    client.flushall()
    client.close()
    return _private_redis


@pytest.fixture
def celery_broker(redis_server, settings, monkeypatch):
    """Point this process's Celery app at a private Redis and send real messages (not eager)."""
    from portal.celery import app

    monkeypatch.setenv("CELERY_BROKER_URL", redis_server.url)  # Celery reads this variable before its config
    old = (app.conf.broker_url, app.conf.task_always_eager)
    settings.CELERY_BROKER_URL = redis_server.url
    app.conf.broker_url = redis_server.url
    app.conf.task_always_eager = False
    app._after_fork()  # drop pooled connections to the old broker
    yield redis_server
    app.conf.broker_url, app.conf.task_always_eager = old
    app._after_fork()


@pytest.fixture
def worker_env(celery_broker, settings, tmp_path, live_server):
    """The environment of a worker process that sees what this test process sees."""
    import os

    from django.db import connection

    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        CELERY_BROKER_URL=celery_broker.url,
        CELERY_TASK_ALWAYS_EAGER="0",
        SITE_URL=live_server.url,
        STORAGE_BACKEND=settings.STORAGE_BACKEND,
        LOCAL_STORAGE_DIR=str(settings.LOCAL_STORAGE_DIR),
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        PORTAL_VAR_DIR=str(tmp_path / "worker-var"),
    )
    if settings.STORAGE_BACKEND == "s3":
        env.update(
            S3_BUCKET=settings.S3_BUCKET,
            S3_ENDPOINT_URL=settings.S3_ENDPOINT_URL,
            S3_REGION=settings.S3_REGION,
            S3_ACCESS_KEY_ID=settings.S3_ACCESS_KEY_ID,
            S3_SECRET_ACCESS_KEY=settings.S3_SECRET_ACCESS_KEY,
            S3_ADDRESSING_STYLE=settings.S3_ADDRESSING_STYLE,
        )
    settings.SITE_URL = live_server.url
    return env


@pytest.fixture
def celery_worker(worker_env):
    from tests.support.processes import CeleryWorker

    worker = CeleryWorker(worker_env).start()
    yield worker
    worker.stop()


@pytest.fixture
def reviewer(db):
    from access import services

    user = UserFactory(email="rita@portal.example")
    services.reviewer_add(actor=services.command_actor("add_reviewer"), user=user)
    return user


@pytest.fixture
def demo_idp(tmp_path):
    """Starts the demo institution (a real OpenID Provider) for a portal: `idp = demo_idp(live_server.url)`, then
    `idp.issuer`, `idp.client_id`, `idp.client_secret`, `idp.people` ({email: password}), `idp.create_person(...)`.
    Each one started is stopped after the test."""
    from tests.support.demo_idp import DemoIdP

    started = []

    def start(portal_url, var_dir=None):
        idp = DemoIdP(portal_url, var_dir or tmp_path / f"demo-idp-var-{len(started)}")
        started.append(idp)
        return idp.start()

    yield start
    for idp in started:
        idp.stop()


@pytest.fixture
def idp(settings, db):
    """An OpenID Provider under the test's control (tests/support/oidc_provider.py), the portal's one provider."""
    from tests.support.oidc_provider import OpenIDProvider, configure

    provider = OpenIDProvider().start()
    configure(settings, provider)
    yield provider
    provider.stop()


@pytest.fixture
def university(idp):
    """Test University, confirmed: its domain uni.example and its provider's issuer."""
    from access import services

    actor = services.command_actor("test")
    institution = services.institution_create(
        actor=actor, ror_id="0testun01", name="Test University", email_domains=["uni.example"], issuers=[idp.issuer]
    )
    return services.institution_confirm(actor=actor, institution=institution)


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the default language: a request in Chinese through the test client leaves Chinese
    active in the thread (LocaleMiddleware activates and never deactivates), and services write texts in it."""
    from django.conf import settings
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)
