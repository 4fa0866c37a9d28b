"""``tracer data download imdb`` against an archive served over http on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli
from tracer.plugins.builtin.sentiment.download import DownloadError, download_imdb, extract


def make_archive(path: Path, members: dict[str, bytes]) -> str:
    """Write a .tar.gz with the given files; returns its SHA-256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return hashlib.sha256(path.read_bytes()).hexdigest()


IMDB_FILES = {
    f"aclImdb/{split}/{label}/{i}_{7 if label == 'pos' else 3}.txt": f"{label} review {i}".encode()
    for split in ("train", "test")
    for label in ("pos", "neg")
    for i in range(3)
}


@dataclass
class Served:
    """A folder and the http URL it is served at."""

    root: Path
    url: str


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A folder served over http on a free port of 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


def test_download_fetches_verifies_and_extracts(served: Served, tmp_path: Path) -> None:
    sha = make_archive(served.root / "imdb.tar.gz", IMDB_FILES)
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "cache"
    root = download_imdb(
        dest,
        url=f"{served.url}/imdb.tar.gz",
        sha256=sha,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert root == dest / "aclImdb"
    assert (root / "train" / "pos" / "0_7.txt").read_text() == "pos review 0"
    assert seen[-1][0] == seen[-1][1] == (served.root / "imdb.tar.gz").stat().st_size
    assert not list(dest.glob("*.tar.gz*"))  # the archive is removed after extraction


def test_download_checksum_mismatch_keeps_nothing(served: Served, tmp_path: Path) -> None:
    make_archive(served.root / "imdb.tar.gz", IMDB_FILES)
    dest = tmp_path / "cache"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_imdb(dest, url=f"{served.url}/imdb.tar.gz", sha256="0" * 64)
    assert list(dest.iterdir()) == []


def test_download_unreachable_url_is_a_clear_error(served: Served, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"cannot download .*missing\.tar\.gz"):
        download_imdb(tmp_path, url=f"{served.url}/missing.tar.gz", sha256="0" * 64)


@pytest.mark.parametrize("name", ["../escape.txt", "/abs/escape.txt", "aclImdb/../../x.txt"])
def test_download_extract_refuses_path_traversal(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "evil.tar.gz"
    make_archive(archive, {name: b"gotcha"})
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DownloadError, match="unsafe path"):
        extract(archive, dest)
    assert not (tmp_path / "escape.txt").exists()


def test_download_extract_refuses_links_out_of_the_folder(tmp_path: Path) -> None:
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("aclImdb/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DownloadError, match="unsafe link"):
        extract(archive, tmp_path)


def test_download_existing_data_is_not_fetched_again(tmp_path: Path) -> None:
    (tmp_path / "aclImdb").mkdir()
    assert (
        download_imdb(tmp_path, url="http://127.0.0.1:9/never", sha256="0") == tmp_path / "aclImdb"
    )


def test_download_command_uses_the_cache(served: Served, tmp_path: Path, monkeypatch) -> None:
    sha = make_archive(served.root / "imdb.tar.gz", IMDB_FILES)
    monkeypatch.setenv("TRACER_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(
        cli, ["data", "download", "imdb", "--url", f"{served.url}/imdb.tar.gz", "--sha256", sha]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cache" / "aclImdb" / "test" / "neg" / "2_3.txt").exists()


def test_download_command_reports_a_bad_checksum(served: Served, tmp_path: Path) -> None:
    make_archive(served.root / "imdb.tar.gz", IMDB_FILES)
    result = CliRunner().invoke(
        cli,
        [
            "data",
            "download",
            "imdb",
            "--dest",
            str(tmp_path),
            "--url",
            f"{served.url}/imdb.tar.gz",
            "--sha256",
            "ab" * 32,
        ],
    )
    assert result.exit_code == 1
    assert "checksum mismatch" in result.output
    assert "Traceback" not in result.output
