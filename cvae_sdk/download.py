"""Named datasets fetched from a mirror into a cache, each file verified by sha256 before use."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CHUNK_BYTES = 1 << 16


def default_cache() -> Path:
    """``$CVAE_SDK_CACHE``, else ``~/.cache/cvae-sdk``."""
    return Path(os.environ.get("CVAE_SDK_CACHE", Path.home() / ".cache" / "cvae-sdk"))


@dataclass(frozen=True)
class RemoteDataset:
    """A dataset published as files under one base URL, with their sha256 digests."""

    name: str
    mirror: str
    files: Mapping[str, str] = field(default_factory=dict)
    mirror_env: str = ""

    def resolved_mirror(self) -> str:
        """The mirror URL, overridable by the environment variable ``mirror_env``."""
        return os.environ.get(self.mirror_env, self.mirror) if self.mirror_env else self.mirror


MNIST = RemoteDataset(
    name="mnist",
    mirror="https://ossci-datasets.s3.amazonaws.com/mnist/",
    mirror_env="CVAE_SDK_MNIST_MIRROR",
    files={
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
)
REMOTE_DATASETS = {MNIST.name: MNIST}


def fetch(dataset: RemoteDataset, cache_dir: Path | None = None, mirror: str | None = None,
          progress: Callable[[str, int, int], None] | None = None, timeout_s: float = 60.0) -> Path:
    """Download ``dataset`` into ``cache_dir/<name>`` and return that folder.

    Files already cached are re-verified, not re-downloaded. A file whose digest disagrees is
    deleted and reported with both digests, so a bad mirror never leaves data behind.
    """
    base = (mirror or dataset.resolved_mirror()).rstrip("/") + "/"
    folder = (cache_dir or default_cache()) / dataset.name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, digest in dataset.files.items():
        target = folder / filename
        if target.is_file() and _sha256(target) == digest:
            continue
        _download(base + filename, target, digest, progress, timeout_s)
    return folder


def _download(url: str, target: Path, digest: str,
              progress: Callable[[str, int, int], None] | None, timeout_s: float) -> None:
    # a partial file of this download's own: processes fetching the same data at once (the ranks of
    # `torchrun ... train --data mnist`) each write theirs, and each rename puts the same verified bytes
    handle, name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    partial = Path(name)
    hasher = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                hasher.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(target.name, done, total)
    except (urllib.error.URLError, OSError) as err:
        partial.unlink(missing_ok=True)
        raise ValueError(f"could not download {url}: {err}. Check the mirror URL (--mirror, or "
                         "CVAE_SDK_MNIST_MIRROR) or pass a local folder with --data") from err
    if hasher.hexdigest() != digest:
        partial.unlink(missing_ok=True)
        raise ValueError(f"checksum mismatch for {url}: sha256 {hasher.hexdigest()} but expected "
                         f"{digest}; the partial file was deleted. Use a trusted mirror")
    os.replace(partial, target)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            hasher.update(chunk)
    return hasher.hexdigest()
