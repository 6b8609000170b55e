"""Downloading names.txt: the sha256 is verified, and a failed download leaves nothing behind.

The file is served by a real HTTP server on 127.0.0.1 (the standard library's), so urllib,
the streaming and the checksum run exactly as they do against GitHub.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from makemore_sweep.data.names_file import ensure_names_file
from makemore_sweep.errors import DataError

CONTENT = b"emma\nolivia\nava\n"


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Talk to 127.0.0.1 directly even on a machine whose environment sets an HTTP proxy."""
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The base URL of an HTTP server serving CONTENT as /names.txt."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "names.txt").write_bytes(CONTENT)
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_download_with_the_right_checksum_is_kept(served: str, tmp_path: Path) -> None:
    target = tmp_path / "data" / "names.txt"
    path = ensure_names_file(
        target, url=f"{served}/names.txt", sha256=hashlib.sha256(CONTENT).hexdigest()
    )
    assert path == target and target.read_bytes() == CONTENT
    assert list(target.parent.iterdir()) == [target]  # no temporary file left


def test_download_with_a_wrong_checksum_is_refused_and_removed(served: str, tmp_path: Path) -> None:
    target = tmp_path / "data" / "names.txt"
    with pytest.raises(DataError) as caught:
        ensure_names_file(target, url=f"{served}/names.txt", sha256="0" * 64)
    message = str(caught.value)
    assert hashlib.sha256(CONTENT).hexdigest() in message and "0" * 64 in message
    assert str(target.resolve()) in message
    assert not (
        tmp_path / "data"
    ).exists()  # neither the file, nor a .part file, nor the new folder


def test_unreachable_server_names_the_path_and_how_to_fix(tmp_path: Path) -> None:
    target = tmp_path / "data" / "names.txt"
    with pytest.raises(DataError) as caught:
        ensure_names_file(target, url="http://127.0.0.1:1/names.txt")
    message = str(caught.value)
    assert (
        str(target) in message and "could not be downloaded" in message and "data.path" in message
    )
    assert not (tmp_path / "data").exists()


def test_an_existing_file_is_used_as_is(tmp_path: Path) -> None:
    target = tmp_path / "names.txt"
    target.write_text("zoe\n")
    assert ensure_names_file(target, url="http://127.0.0.1:1/never-contacted") == target
