"""Input from outside that once reached a 500: each now gets a clear 4xx (or, for a Range the server may
ignore, an ordinary answer), on the test client and through a real HTTP server."""

import pytest

from access.storage import LocalStorage
from tests.factories import ReleaseFactory, add_file

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes
KEY = "facebook/opt-125m/config.json"


@pytest.fixture
def release(local_storage):
    release = ReleaseFactory(repo_id="facebook/opt-125m", access="open")
    add_file(release, "config.json", PAYLOAD)
    return release


# ---------------------------------------------------------------------------------------------- signed storage URLs


@pytest.mark.parametrize("signature", ["é", "0" * 63, "0" * 65, "A" * 64, "g" * 64, "", "ａ" * 64])
def test_it_refuses_a_signature_that_is_not_64_lowercase_hex_digits(local_storage, signature):
    assert local_storage.verify(KEY, 99999999999, signature) is False


def test_a_genuine_signature_still_verifies(local_storage):
    assert local_storage.verify(KEY, 99999999999, LocalStorage.signature(KEY, 99999999999)) is True


@pytest.mark.django_db
def test_a_non_ascii_signature_in_the_url_is_a_403(client, release):
    response = client.get(f"/storage/99999999999/%C3%A9/{KEY}")
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_signature"
