"""Pack onnxruntime-gpu for a GPU machine that has no package registry, in parts that fit one transfer each.

The onnxruntime-gpu wheel (1.31.1, CPython 3.12) is 255 MB, 218 MB of it compressed CUDA machine code
(cubins) for six GPU generations: sm_75, 80, 86, 89, 90 and 120. A machine with one GPU kind runs
only its own; the others are dead weight in every transfer. ``--arch 90`` (H100, H200) keeps the
sm_90 cubins and zeroes the payloads of the rest in place (their headers stay, so the file layout
and every offset are unchanged and the driver still finds sm_90); zeroed bytes compress to almost
nothing. The library and Python files that a session never loads (the C-API library, the TensorRT
provider) are left out. ``--arch all`` packs the wheel's files unchanged.

    python benchmarks/gpu_wheel.py onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl \\
        --arch 90 --out .gpu --part-mib 40

writes ``.gpu/ort-gpu.tar.xz.00``, ``.01``, ..., ``.gpu/ort-gpu.sha256`` and ``.gpu/ort-gpu.tag`` (the
Python the wheel is for), and ``.gpu/ort-gpu.json`` (the sizes: what was kept and what was packed). On the GPU machine
``benchmarks/gpu_run.sh`` joins the parts, checks the sum and unpacks into a folder put first on
``PYTHONPATH`` (it shadows any CPU ``onnxruntime`` installed there). The CUDA libraries the provider
links (cuBLAS 13, cuDNN 9, cuFFT 12, cuRAND 10, the CUDA 13 runtime) come from the machine's own
CUDA build of torch: onnxruntime's ``preload_dlls`` finds them in the ``nvidia`` packages.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import struct
import tarfile
import zipfile
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
CUDA_PROVIDER = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
LEFT_OUT = ("onnxruntime/capi/libonnxruntime.so", "onnxruntime/capi/libonnxruntime_providers_tensorrt.so")


def _section(elf: bytes, name: bytes) -> tuple[int, int]:
    """(file offset, size) of an ELF64 section, read from the section header table."""
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    strtab_off, = struct.unpack_from("<Q", elf, shoff + shstrndx * shentsize + 0x18)
    for i in range(shnum):
        header = shoff + i * shentsize
        name_at, = struct.unpack_from("<I", elf, header)
        if elf[strtab_off + name_at:].split(b"\0", 1)[0] == name:
            offset, size = struct.unpack_from("<QQ", elf, header + 0x18)
            return offset, size
    raise ValueError(f"no {name.decode()} section")


def keep_arch(elf: bytes, arch: int) -> tuple[bytes, dict[int, int]]:
    """Zero every cubin payload in ``.nv_fatbin`` that is not for sm_``arch``; returns the new bytes and
    the bytes kept per architecture before the change."""
    data = bytearray(elf)
    start, size = _section(elf, b".nv_fatbin")
    sizes: dict[int, int] = {}
    pos, end = start, start + size
    while pos < end - 16:
        magic, _, header_size, fat_size = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # fatbins are 8-byte aligned, with padding between them
            continue
        entry, stop = pos + header_size, pos + header_size + fat_size
        while entry < stop:
            _, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            sm, = struct.unpack_from("<I", data, entry + 28)
            sizes[sm] = sizes.get(sm, 0) + payload
            if sm != arch:
                body = entry + entry_header
                data[body:body + payload] = bytes(payload)
            entry += entry_header + payload
        pos = stop
    if arch not in sizes:
        raise ValueError(f"the CUDA provider has no sm_{arch} code (it has {sorted(sizes)}); use --arch all")
    return bytes(data), sizes


def pack(wheel: Path, arch: str, report: dict[str, object]) -> bytes:
    """The wheel's files as one .tar.xz, slimmed to one architecture unless ``arch == 'all'``; what it
    did goes into ``report``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(wheel) as archive, tarfile.open(fileobj=buffer, mode="w") as tar:
        for info in archive.infolist():
            if info.is_dir() or (arch != "all" and info.filename.startswith(LEFT_OUT)):
                continue
            content = archive.read(info)
            if info.filename == CUDA_PROVIDER:
                report["cuda_provider_bytes"] = len(content)
                if arch != "all":
                    content, sizes = keep_arch(content, int(arch))
                    report["cubin_bytes_per_sm"] = {str(sm): n for sm, n in sorted(sizes.items())}
            member = tarfile.TarInfo(info.filename)
            member.size, member.mode = len(content), 0o755 if info.filename.endswith(".so") else 0o644
            tar.addfile(member, io.BytesIO(content))
    return lzma.compress(buffer.getvalue(), preset=6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--arch", default="90", help="the GPU's sm number (90 for H100/H200), or 'all'")
    parser.add_argument("--out", type=Path, default=Path(".gpu"))
    parser.add_argument("--part-mib", type=int, default=40, help="the size of each part (one transfer each)")
    args = parser.parse_args()
    report: dict[str, object] = {"wheel": args.wheel.name, "wheel_bytes": args.wheel.stat().st_size, "arch": args.arch}
    packed = pack(args.wheel, args.arch, report)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("ort-gpu.tar.xz.*"):
        old.unlink()
    step = args.part_mib << 20
    for i in range(0, len(packed), step):
        (args.out / f"ort-gpu.tar.xz.{i // step:02d}").write_bytes(packed[i:i + step])
    (args.out / "ort-gpu.sha256").write_text(hashlib.sha256(packed).hexdigest() + "\n")
    (args.out / "ort-gpu.tag").write_text(args.wheel.name.split("-")[2] + "\n")  # cp312: the Python it needs
    report.update(packed_bytes=len(packed), parts=-(-len(packed) // step), part_mib=args.part_mib)
    (args.out / "ort-gpu.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
