"""Fetch the IMDB archive into the cache: download, verify the checksum, extract safely."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tracer.plugins.pipeline import PipelineError

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
CHUNK = 1 << 16

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


class DownloadError(PipelineError):
    """The archive could not be fetched, did not match its checksum, or is unsafe."""


def cache_dir() -> Path:
    """Where downloaded data lives: ``$TRACER_CACHE``, else ``~/.cache/layer-tracer``."""
    env = os.environ.get("TRACER_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "layer-tracer"


def fetch(url: str, dest: Path, sha256: str, progress: Progress | None = None) -> Path:
    """Stream ``url`` into ``dest``; keep it only if its SHA-256 equals ``sha256``."""
    partial = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from None
    if digest.hexdigest() != sha256.lower():
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest.hexdigest()}"
        )
    partial.replace(dest)
    return dest


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    """Refuse members that would land outside ``root`` (absolute paths, ``..``, odd links)."""
    target = (root / member.name).resolve()
    if not target.is_relative_to(root):
        raise DownloadError(f"unsafe path in archive: {member.name}")
    if member.issym() or member.islnk():
        link = (target.parent / member.linkname).resolve()
        if Path(member.linkname).is_absolute() or not link.is_relative_to(root):
            raise DownloadError(f"unsafe link in archive: {member.name} -> {member.linkname}")
    elif not (member.isfile() or member.isdir()):
        raise DownloadError(f"unsupported member in archive: {member.name}")


def extract(archive: Path, dest: Path) -> None:
    """Extract a ``.tar.gz`` into ``dest`` after checking every member stays inside it."""
    root = dest.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, root)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(root, members=members)
    except tarfile.TarError as exc:
        raise DownloadError(f"cannot extract {archive}: {exc}") from None


def download_imdb(
    dest: Path | None = None,
    *,
    url: str = IMDB_URL,
    sha256: str = IMDB_SHA256,
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Download and extract IMDB into ``dest`` (the cache); returns the ``aclImdb`` folder."""
    dest = Path(dest) if dest else cache_dir()
    target = dest / "aclImdb"
    if target.is_dir() and not force:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    archive = fetch(url, dest / "aclImdb_v1.tar.gz", sha256, progress)
    if force and target.is_dir():
        shutil.rmtree(target)
    extract(archive, dest)
    archive.unlink()
    if not target.is_dir():
        raise DownloadError(f"the archive from {url} has no aclImdb folder")
    return target
