"""Writing samples to disk: PNG grids, streamed ``.npy`` (bounded memory) and ``.npz``.

Every file is written atomically: a failure leaves no half-written file at the target path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cvae_sdk.atomic import atomic_path, writable_folder
from cvae_sdk.checks import even_split, positive_int
from cvae_sdk.generator import Generator, HostOutput
from cvae_sdk.images import make_image_grid, write_png
from cvae_sdk.labels import LabelInput, parse_labels, samples_per_label
from cvae_sdk.progress import progress_bar

MAX_PNG_PER_LABEL = 64
MAX_NPZ_BYTES = 4 * 2**30  # a .npz is built in memory before it is written; .npy streams any size
LABEL_BYTES = 8            # one int64 label per sample
SUFFIXES = (".png", ".npy", ".npz")


def parse_shard(shard: str | None, total: int) -> tuple[int, int]:
    """'k/N' -> the [start, stop) sample range of shard k of N (an even split, remainder first)."""
    if shard is None:
        return 0, total
    try:
        k, n = (int(part) for part in shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like k/N (e.g. 0/4), got {shard!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard k/N needs N >= 1 and 0 <= k < N, got {shard!r}")
    return even_split(total, n, k)


def write_samples(gen: Generator, out: Path, labels: LabelInput, n: int, *, seed: int,
                  temperature: float | None, dtype: str, shard: str | None,
                  progress: bool, columns: int | None = None, scale: int = 1) -> dict[str, Any]:
    """Sample ``n`` per label and write them to ``out`` by its suffix; returns a summary.

    A ``.png`` grid gives each label ``ceil(n / columns)`` rows (default: one row of ``n``), its cells
    enlarged ``scale`` times.
    """
    if out.suffix not in SUFFIXES:
        raise ValueError(f"--out must end in one of {SUFFIXES}, got {out.name!r}")
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"dtype must be float32 or uint8, got {dtype!r}")
    if shard is not None and out.suffix != ".npy":
        raise ValueError("--shard writes .npy parts; use an --out ending in .npy")
    total = parse_labels(labels, gen.config.class_names).shape[0] * samples_per_label(n)
    start, stop = parse_shard(shard, total)
    if out.suffix == ".png" and n > MAX_PNG_PER_LABEL:
        raise ValueError(f"a PNG grid holds at most {MAX_PNG_PER_LABEL} samples per label, got --n {n}; "
                         "write .npy for more")
    check_room(out, stop - start, gen.config.sample_shape, dtype)
    if out.suffix == ".png":
        _write_png(gen, out, labels, n, seed, temperature, columns or n, scale)
    elif out.suffix == ".npz":
        result = gen.generate(labels, n, rng=seed, temperature=temperature,
                              output_type="uint8" if dtype == "uint8" else "np")
        with atomic_path(out) as tmp, tmp.open("wb") as handle:
            # the keys `cvae-sdk train` reads: generated data can be trained on as it is
            np.savez(handle, images=result.samples, labels=result.labels, latents=result.latents,
                     class_names=np.array(gen.config.class_names))
    else:
        _stream_npy(gen, out, labels, n, seed, temperature, dtype, start, stop, progress)
    return {"out": str(out), "samples": stop - start, "first_index": start,
            "sample_shape": list(gen.config.sample_shape), "providers": gen.providers}


def check_room(out: Path, samples: int, sample_shape: tuple[int, ...], dtype: str) -> None:
    """Refuse, before any work, output the folder's disk cannot hold or a ``.npz`` too large for memory."""
    folder = writable_folder(out)
    size = samples * int(np.prod(sample_shape)) * np.dtype(dtype).itemsize + samples * LABEL_BYTES
    if out.suffix == ".npz" and size > MAX_NPZ_BYTES:
        raise ValueError(f"{samples:,} samples make a {size / 2**30:.1f} GiB .npz, built in memory; the limit is "
                         f"{MAX_NPZ_BYTES / 2**30:.0f} GiB. Write .npy (streamed in bounded memory) for more")
    free = shutil.disk_usage(folder).free
    if size > free:
        raise ValueError(f"{samples:,} samples need {size / 2**30:,.1f} GiB but {folder} has {free / 2**30:,.1f} GiB "
                         "free; lower --n, use --shard K/N across disks, or write elsewhere")


def _write_png(gen: Generator, out: Path, labels: LabelInput, n: int, seed: int,
               temperature: float | None, columns: int, scale: int) -> None:
    positive_int(columns, "columns")
    result = gen.generate(labels, n, rng=seed, temperature=temperature, output_type="uint8")
    names = [gen.config.class_names[i] for i in result.labels[::n]]  # one per requested label, in order
    rows_each = -(-n // columns)  # every label starts a new row; its last row is padded with blanks
    cells = np.zeros((len(names), rows_each * columns, *gen.config.sample_shape), dtype=np.uint8)
    cells[:, :n] = result.samples.reshape(len(names), n, *gen.config.sample_shape)
    row_labels = [name if r == 0 else "" for name in names for r in range(rows_each)]
    grid = make_image_grid(cells.reshape(-1, *gen.config.sample_shape), columns, row_labels=row_labels, scale=scale)
    write_png(out, grid)


def _stream_npy(gen: Generator, out: Path, labels: LabelInput, n: int, seed: int,
                temperature: float | None, dtype: str, start: int, stop: int, progress: bool) -> None:
    """Append chunks to a .npy after its header, with labels in a ``.labels.npy`` beside it.

    Plain sequential writes of both files, not a memory map: written pages belong to the page cache,
    not to this process, so peak RSS stays at a few chunks whatever ``--n`` is. The labels are
    renamed into place before the images (the inner block ends first): a reader never finds new
    images beside missing or older labels.
    """
    count = stop - start
    labels_out = out.with_name(out.stem + ".labels.npy")
    output_type: HostOutput = "uint8" if dtype == "uint8" else "np"
    chunks = gen.iter_chunks(labels, n, rng=seed, temperature=temperature,  # validates eagerly
                             output_type=output_type, start=start, stop=stop)
    with atomic_path(out) as tmp, atomic_path(labels_out) as tmp_labels:
        with tmp.open("wb") as handle, tmp_labels.open("wb") as label_handle, \
                progress_bar(count, f"sampling {out.name}", progress and count > 1) as bar:
            _npy_header(handle, np.dtype(dtype), (count, *gen.config.sample_shape))
            _npy_header(label_handle, np.dtype(np.int64), (count,))
            for chunk in chunks:
                handle.write(np.ascontiguousarray(chunk.samples, dtype=np.dtype(dtype)).data)
                label_handle.write(np.ascontiguousarray(chunk.labels, dtype=np.int64).data)
                bar.advance(chunk.labels.shape[0])


def _npy_header(handle: BinaryIO, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(handle, header)
