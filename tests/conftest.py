import pytest

from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _fresh_caches(settings):
    from django.core.cache import caches

    for alias in settings.CACHES:
        caches[alias].clear()
    from access.storage import get_storage

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
