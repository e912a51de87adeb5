"""A code version as bytes: what a validation ships to the eval agents that play its match.

``pack_tree(root)`` packs the files git sees in a checkout — tracked and untracked-but-not-
ignored, as they are on disk (``git ls-files -co --exclude-standard``) — into a tar.gz that is
the same bytes for the same files (sorted names, no times or owners, modes 0644 / 0755, gzip
without a timestamp), so its sha256 names the code. A pull request's working tree with
uncommitted changes is packed as it is: the code played remotely is the code the local match
would play (its commit is reported as ``HEAD+dirty``). ``unpack_cached(data, digest, cache)``
verifies the digest and unpacks once into ``cache/<digest>`` (a folder made under a temporary
name and renamed, so a half-unpacked version is never used); members that would land outside
the folder, links and devices are refused (``tarfile``'s ``data`` filter). ``prune_cache``
keeps the newest few versions.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from streams.errors import JetzeroError

__all__ = ["BundleError", "pack_tree", "prune_cache", "unpack_cached"]

KEEP_VERSIONS = 8  # code versions kept in an agent's cache


class BundleError(JetzeroError):
    """A code version could not be packed, or its bytes fail their digest or do not unpack."""


def _files(root: Path) -> list[str]:
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"],
                                check=True, capture_output=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BundleError(f"cannot list the files of {root}: {exc}") from None
    return sorted({name for name in listed.decode().split("\0") if name and (root / name).is_file()})


def _member(root: Path, name: str) -> tuple[tarfile.TarInfo, bytes]:
    path = root / name
    data = path.read_bytes()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
    info.mtime = 0
    return info, data


def pack_tree(root: str | Path) -> tuple[bytes, str]:
    """``(tar.gz bytes, their sha256)`` of the files git sees in the checkout ``root``."""
    root = Path(root)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in _files(root):
            info, data = _member(root, name)
            tar.addfile(info, io.BytesIO(data))
    packed = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
    return packed, hashlib.sha256(packed).hexdigest()


def unpack_cached(data: bytes, digest: str, cache: str | Path) -> Path:
    """The folder of the code version ``digest`` in ``cache``, unpacked from ``data`` if new."""
    target = Path(cache) / digest
    if target.is_dir():
        os.utime(target)  # recently used: kept by prune_cache
        return target
    if hashlib.sha256(data).hexdigest() != digest:
        raise BundleError(f"code version {digest[:12]}: its bytes fail the digest check")
    Path(cache).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=cache))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")
        try:
            staging.rename(target)
        except OSError:  # another player unpacked it meanwhile
            if not target.is_dir():
                raise
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise BundleError(f"code version {digest[:12]} does not unpack: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def prune_cache(cache: str | Path, keep: int = KEEP_VERSIONS, *, spare: tuple[str, ...] = ()) -> None:
    """Remove all but the ``keep`` most recently used versions (never those in ``spare``)."""
    folders = [p for p in Path(cache).glob("*") if p.is_dir() and not p.name.startswith(".")]
    folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for folder in folders[keep:]:
        if folder.name not in spare:
            shutil.rmtree(folder, ignore_errors=True)
