"""One contract, both backends: LocalStorage (served by the portal's file view) and S3Storage against nanio,
a real S3 server that verifies SigV4 signatures and expiry."""

import hashlib
import io
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

pytestmark = pytest.mark.django_db(transaction=True)

PAYLOAD = hashlib.shake_256(b"contract").digest(300_000)


@pytest.fixture(params=["local", "s3"])
def backend(request, live_server, settings, tmp_path):
    settings.SITE_URL = live_server.url
    if request.param == "local":
        storage = request.getfixturevalue("local_storage")
    else:
        storage = request.getfixturevalue("s3_storage")
    storage.save("contract/dir/shard 1+2.pt", io.BytesIO(PAYLOAD))
    return storage


def tamper(url: str) -> str:
    """Flip one hex digit of the signature, wherever the backend keeps it."""
    parts = urlsplit(url)
    if "X-Amz-Signature=" in parts.query:
        query = parts.query
        i = query.index("X-Amz-Signature=") + len("X-Amz-Signature=")
        query = query[:i] + ("0" if query[i] != "0" else "1") + query[i + 1 :]
        return urlunsplit(parts._replace(query=query))
    segments = parts.path.split("/")
    sig = segments[3]
    segments[3] = ("0" if sig[0] != "0" else "1") + sig[1:]
    return urlunsplit(parts._replace(path="/".join(segments)))


def test_it_serves_the_bytes_for_a_valid_url(backend):
    response = requests.get(backend.signed_url("contract/dir/shard 1+2.pt", filename="shard 1+2.pt", ttl=60))
    assert response.status_code == 200
    assert response.content == PAYLOAD
    assert int(response.headers["Content-Length"]) == len(PAYLOAD)
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers.get("ETag")


def test_it_answers_a_range_with_206(backend):
    url = backend.signed_url("contract/dir/shard 1+2.pt", filename="shard 1+2.pt", ttl=60)
    response = requests.get(url, headers={"Range": "bytes=1000-1999"})
    assert response.status_code == 206
    assert response.content == PAYLOAD[1000:2000]
    assert response.headers["Content-Range"] == f"bytes 1000-1999/{len(PAYLOAD)}"
    response = requests.get(url, headers={"Range": f"bytes={len(PAYLOAD) - 10}-"})
    assert response.status_code == 206
    assert response.content == PAYLOAD[-10:]


def test_it_refuses_a_tampered_signature(backend):
    url = backend.signed_url("contract/dir/shard 1+2.pt", filename="shard 1+2.pt", ttl=60)
    assert requests.get(tamper(url)).status_code == 403


def test_it_refuses_a_url_signed_for_another_key(backend):
    backend.save("contract/other.pt", io.BytesIO(b"other"))
    url = backend.signed_url("contract/other.pt", filename="other.pt", ttl=60)
    assert requests.get(url.replace("contract/other.pt", "contract/dir/shard%201%2B2.pt")).status_code == 403


def test_it_refuses_an_expired_url(backend):
    url = backend.signed_url("contract/dir/shard 1+2.pt", filename="shard 1+2.pt", ttl=1)
    assert requests.get(url).status_code == 200
    time.sleep(2.1)
    assert requests.get(url).status_code == 403


def test_an_unknown_key_is_not_found(backend):
    # S3 answers 404 NoSuchKey when the signer may list the bucket (nanio does); AWS answers 403 without
    # s3:ListBucket. LocalStorage always answers 404.
    response = requests.get(backend.signed_url("contract/missing.pt", filename="missing.pt", ttl=60))
    assert response.status_code == 404


def test_it_hashes_while_saving_and_lists_by_prefix(backend):
    size, sha = backend.save("contract/listed/a.bin", io.BytesIO(b"abc"))
    assert (size, sha) == (3, hashlib.sha256(b"abc").hexdigest())
    assert tuple(backend.hash_object("contract/listed/a.bin")) == (3, sha)
    assert [(o.key, o.size) for o in backend.list("contract/listed")] == [("contract/listed/a.bin", 3)]
    assert backend.exists("contract/listed/a.bin")
    assert not backend.exists("contract/listed/b.bin")


def test_it_names_the_file_for_download(backend):
    url = backend.signed_url("contract/dir/shard 1+2.pt", filename="shard 1+2.pt", ttl=60)
    if "X-Amz-Signature" in url:
        # S3 sets the header from the signed response-content-disposition parameter; nanio ignores it, AWS honours it.
        assert "response-content-disposition=attachment" in url
    else:
        disposition = requests.get(url).headers["Content-Disposition"]
        assert 'filename="shard 1+2.pt"' in disposition
        assert urlsplit(url).query == ""
        assert urlsplit(url).path.endswith("/shard%201%2B2.pt")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a\\b", "nul\x00byte"])
def test_it_refuses_keys_that_escape(local_storage, key):
    with pytest.raises(ValueError):
        local_storage.save(key, io.BytesIO(b"x"))


def test_head_sends_headers_only_and_keeps_the_connection_usable(local_storage, live_server, settings):
    """A HEAD that sent a body would desynchronise keep-alive clients (the Hugging Face client HEADs, then GETs)."""
    import http.client
    from urllib.parse import urlsplit

    settings.SITE_URL = live_server.url
    local_storage.save("contract/head.bin", io.BytesIO(PAYLOAD))
    url = urlsplit(local_storage.signed_url("contract/head.bin", filename="head.bin", ttl=60))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    conn.request("HEAD", url.path)
    head = conn.getresponse()
    assert head.status == 200 and head.getheader("Content-Length") == str(len(PAYLOAD))
    assert head.read() == b""
    conn.request("GET", url.path, headers={"Range": "bytes=0-99"})
    partial = conn.getresponse()
    assert partial.status == 206 and partial.read() == PAYLOAD[:100]
    conn.close()


def test_it_hashes_pieces_in_the_same_pass(backend):
    data = hashlib.shake_256(b"pieces").digest(2 * 1024 + 100)
    digest = backend.save("contract/pieces.bin", io.BytesIO(data), piece_size=1024)
    assert (digest.size, digest.sha256, digest.piece_size) == (len(data), hashlib.sha256(data).hexdigest(), 1024)
    assert digest.pieces == tuple(hashlib.sha256(data[i : i + 1024]).hexdigest() for i in (0, 1024, 2048))
    assert backend.hash_object("contract/pieces.bin", piece_size=1024) == digest
    assert backend.save("contract/empty.bin", io.BytesIO(b""), piece_size=1024).pieces == ()
