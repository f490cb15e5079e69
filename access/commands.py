"""The download commands the pages show: the download guide, a release's page, a grant's and a lab grant's page,
and the token page right after a token is created. Each command is built here and nowhere else, so every page
shows the same text for the same release, and the text is what `tests/test_download_commands.py` runs.

Only a gated release's commands send a token. An open release needs none, and the portal still checks any token
it is sent: a wrong one is refused with 401 `invalid_token`, so that a script with a broken token finds out.
An open release's commands therefore send nothing, and keep the Hugging Face client from sending a Hub login
saved on the machine. The commands run on a stock Debian or Ubuntu shell (`python3`, there is no `python`), and
curl's `--fail-with-body` stops a command at a refusal and prints the portal's JSON message instead of handing
it on to the next tool as a file list.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import quote

from . import selectors
from .http import base_url
from .models import ModelRelease

TOKEN_PLACEHOLDER = "<paste your token>"  # noqa: S105 (what a person pastes over, not a secret)
CURL = "curl --fail-with-body -sS"
AUTH = ' -H "Authorization: Bearer $PORTAL_TOKEN"'


@dataclass(frozen=True)
class DownloadCommands:
    """The commands for one release on one portal. `secret` is a token just created (the token page shows it
    once, in place); otherwise a gated release's token line holds a placeholder to paste over."""

    portal_url: str
    repo_id: str
    name: str
    gated: bool
    file_path: str = ""
    file_sha256: str = ""
    secret: str = ""

    @property
    def token(self) -> str:
        """The line that sets PORTAL_TOKEN, which a gated release's commands read; empty for an open release."""
        if not self.gated:
            return ""
        return f"export PORTAL_TOKEN={self.secret}" if self.secret else f'export PORTAL_TOKEN="{TOKEN_PLACEHOLDER}"'

    @property
    def token_and_script(self) -> str:
        return f"{self.token}\n{self.script}" if self.gated else self.script

    @property
    def script(self) -> str:
        return (
            f"{CURL} -O {self.portal_url}/download.py &&\n"
            f"python3 download.py {self.repo_id} --portal {self.portal_url} --dir ./{self.name} --jobs 8"
        )

    @property
    def aria2(self) -> str:
        return (
            f"{self._fetch(self._manifest('aria2'), f'{self.name}.aria2')} &&\n"
            f"aria2c -i {self.name}.aria2 -j 8 -x 4 -c -d ./{self.name}"
        )

    @property
    def metalink(self) -> str:
        return (
            f"{self._fetch(self._manifest('metalink'), f'{self.name}.meta4')} &&\n"
            f"aria2c -M {self.name}.meta4 -j 8 -s 1 -c --uri-selector=inorder -d ./{self.name}"
        )

    @property
    def wget(self) -> str:
        return (
            f"mkdir -p {self.name} && cd {self.name} &&\n"
            f"{self._fetch(self._manifest('wget'), 'files.txt')} &&\n"
            f"{self._fetch(self._manifest('sha256sum'), 'SHA256SUMS')} &&\n"
            "wget -c -i files.txt && sha256sum -c SHA256SUMS"
        )

    @property
    def curl(self) -> str:
        """One file (the release's first), checked against its SHA-256 as it lands."""
        if not self.file_path:
            return ""
        url = f"{self.portal_url}/api/v1/models/{self.repo_id}/files/{quote(self.file_path)}"
        auth = AUTH if self.gated else ""
        return (
            f'{CURL} -L -O{auth} \\\n  "{url}" &&\n'
            f'echo "{self.file_sha256}  {posixpath.basename(self.file_path)}" | sha256sum -c'
        )

    @property
    def hf(self) -> str:
        credential = 'HF_TOKEN="$PORTAL_TOKEN"' if self.gated else "HF_HUB_DISABLE_IMPLICIT_TOKEN=1"
        return f"HF_ENDPOINT={self.portal_url} {credential} hf download {self.repo_id} --local-dir ./{self.name}"

    @property
    def hf_python(self) -> str:
        token = 'os.environ["PORTAL_TOKEN"]' if self.gated else "False"
        call = (
            f'snapshot_download("{self.repo_id}", endpoint="{self.portal_url}", token={token}, '
            f'local_dir="./{self.name}")'
        )
        imports = "import os\n\n" if self.gated else ""
        return f"{imports}from huggingface_hub import snapshot_download\n\n{call}"

    def _manifest(self, fmt: str) -> str:
        return f"{self.portal_url}/api/v1/models/{self.repo_id}/manifest?format={fmt}"

    def _fetch(self, url: str, out: str) -> str:
        return f'{CURL}{AUTH if self.gated else ""} \\\n  "{url}" -o {out}'


def download_commands(*, request, release: ModelRelease, secret: str = "") -> DownloadCommands:
    """The commands for `release` as this request reaches the portal (its own URL, so they run as shown)."""
    first = selectors.release_files(release=release).only("path", "sha256").first()
    return DownloadCommands(
        portal_url=base_url(request),
        repo_id=release.repo_id,
        name=release.name,
        gated=release.is_gated,
        file_path=first.path if first else "",
        file_sha256=first.sha256 if first else "",
        secret=secret,
    )
