"""Secrets and keys the demo institution makes on its first start and keeps in its own directory."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path


def private_file(path: Path, make: Callable[[], str]) -> str:
    """The content of `path`; on first use it is written with `make()`, readable by its owner only (0600).

    Several processes may start at once (gunicorn's workers each import the settings): each writes its own
    temporary file and links it into place, so the first one wins and every process reads the same content."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(make())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    return path.read_text()


def write_private(path: Path, content: str) -> None:
    """Replace `path` atomically with `content`, mode 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.replace(temporary, path)


def rsa_private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def random_secret() -> str:
    return secrets.token_urlsafe(48)


def random_password() -> str:
    return secrets.token_urlsafe(15)
