"""Atomic file writes: a temp file in the target's folder, renamed over the target on success.

A crash or a failed check leaves either the old file or nothing, never half a file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def writable_folder(target: str | Path) -> Path:
    """The existing, writable folder ``target`` would be written into; a one-line error otherwise.

    Every command checks its output files this way before any work, and none creates a missing
    folder for a file: a typo in ``--out`` is named, not silently made into a new folder tree."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"cannot write {target}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {target}: folder {folder} is not writable; choose another --out")
    return folder


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it over ``target`` if the block succeeds.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "out.txt") as tmp:
    ...     _ = tmp.write_text("all or nothing")
    >>> (folder / "out.txt").read_text(), sorted(p.name for p in folder.iterdir())
    ('all or nothing', ['out.txt'])
    """
    target = Path(target)
    folder = writable_folder(target)
    while True:  # created with mode 0o666, so the process umask applies as to any new file
        tmp = folder / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
