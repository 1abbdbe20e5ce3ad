"""Downloading a named dataset from a real HTTP server on 127.0.0.1, with sha256 checks."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import write_idx_folder
from typer.testing import CliRunner

from cvae_sdk.cli import app
from cvae_sdk.data import load_dataset
from cvae_sdk.download import MNIST, RemoteDataset, fetch


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving a folder; yields (base URL, folder)."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.gz"))}


def test_fetch_downloads_verifies_and_loads(served: tuple[str, Path], tmp_path: Path, mnist_dir: Path) -> None:
    url, root = served
    for f in mnist_dir.glob("*.gz"):
        shutil.copy(f, root / f.name)
    source = RemoteDataset("mnist-local", url, _digests(root))
    seen: list[str] = []
    folder = fetch(source, cache_dir=tmp_path / "cache", progress=lambda name, done, total: seen.append(name))
    ds = load_dataset(folder)
    assert len(ds.train) == 24345 and ds.test is not None and len(ds.test) == 10000
    assert set(seen) == set(source.files)
    # a second fetch re-verifies the cache and needs no server
    assert fetch(source, cache_dir=tmp_path / "cache", mirror="http://127.0.0.1:9/") == folder


def test_official_test_files_match_pinned_digests(served: tuple[str, Path], tmp_path: Path, mnist_dir: Path) -> None:
    url, root = served
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, root / name)
    subset = RemoteDataset("mnist", url, {k: v for k, v in MNIST.files.items() if k.startswith("t10k")})
    folder = fetch(subset, cache_dir=tmp_path)
    assert (folder / "t10k-images-idx3-ubyte.gz").is_file()


def test_checksum_mismatch_deletes_partial(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    write_idx_folder(root)
    bad = {name: "0" * 64 for name in _digests(root)}
    with pytest.raises(ValueError, match="checksum mismatch .* partial file was deleted"):
        fetch(RemoteDataset("x", url, bad), cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "x").iterdir()) == []


def test_unreachable_mirror_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="could not download .* mirror"):
        fetch(RemoteDataset("x", "http://127.0.0.1:9/", {"a.gz": "0" * 64}), cache_dir=tmp_path, timeout_s=5)


def test_cli_train_mnist_with_bad_mirror_fails_cleanly(served: tuple[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = served
    write_idx_folder(root)  # not the official bytes: the pinned sha256 must reject them
    monkeypatch.setenv("CVAE_SDK_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["train", "--data", "mnist", "--mirror", url, "--out",
                                      str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2
    assert "checksum mismatch" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "last.pt").exists()


def test_concurrent_fetches_of_the_same_data_each_write_their_own_partial_file(
        served: tuple[str, Path], tmp_path: Path) -> None:
    """As the ranks of `torchrun ... train --data mnist` do: every fetch succeeds, with the verified bytes."""
    url, root = served
    write_idx_folder(root)
    source = RemoteDataset("x", url, _digests(root))
    with ThreadPoolExecutor(4) as pool:
        folders = list(pool.map(lambda _: fetch(source, cache_dir=tmp_path / "cache"), range(4)))
    assert len(set(folders)) == 1 and _digests(folders[0]) == _digests(root)
    assert sorted(p.name for p in folders[0].iterdir()) == sorted(_digests(root))  # no partial file left
