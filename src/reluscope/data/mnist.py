"""MNIST from a local directory: ``mnist.npz`` or the four IDX files (gzipped or not)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from reluscope.data.dataset import Dataset
from reluscope.data.files import as_dataset, data_root, find_file, read_npz_part
from reluscope.data.options import choice, flag
from reluscope.errors import InputError
from reluscope.io import check_readable_file

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_PREFIX = {"train": "train", "test": "t10k"}
EXPECTED = (
    "mnist.npz (arrays x_train, y_train, x_test, y_test) or the IDX files "
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (each optionally .gz), directly or in a subfolder mnist/ or MNIST/raw/"
)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in an IDX file (the MNIST format), gzip-compressed or not.

    Layout: two zero bytes, a type code, the number of dimensions k, k big-endian uint32
    sizes, then the values in big-endian row-major order."""
    path = check_readable_file(path, "IDX file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise InputError(
                f"IDX file {str(path)!r} is a damaged or truncated gzip file ({exc}); expected "
                "a complete copy"
            ) from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_DTYPES:
        raise InputError(f"{str(path)!r} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim, dtype = raw[3], np.dtype(IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw[:offset].ljust(offset, b"\0"), ">u4", offset=4))
    if len(raw) != offset + dtype.itemsize * int(np.prod(shape)):
        raise InputError(
            f"IDX file {str(path)!r} is truncated or corrupt: header says shape {shape}, "
            f"but it holds {len(raw) - offset} bytes of data"
        )
    return np.frombuffer(raw, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(dirs: list[Path], prefix: str, kind: str, ndim: int) -> Path | None:
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    return find_file(dirs, [n + ext for n in names for ext in ("", ".gz")])


def mnist(
    part: str = "train", flatten: bool = True, *, data_dir: str | os.PathLike[str] | None = None
) -> Dataset:
    """The MNIST ``train`` (60000) or ``test`` (10000) images from ``data_dir``: pixels scaled to
    [0, 1], as 784 features, or as (1, 28, 28) images when ``flatten`` is false. ``mnist.npz`` is
    preferred over the IDX files when both are present."""
    part = choice(part, "part", "mnist", ("train", "test"))
    flatten = flag(flatten, "flatten", "mnist")
    root = data_root(data_dir, "mnist", EXPECTED)
    dirs = [root, root / "mnist", root / "MNIST" / "raw"]
    npz = find_file(dirs, ["mnist.npz"])
    if npz is not None:
        x, y = read_npz_part(npz, part)
        source = npz
    else:
        images = _idx_file(dirs, IDX_PREFIX[part], "images", 3)
        labels = _idx_file(dirs, IDX_PREFIX[part], "labels", 1)
        if images is None or labels is None:
            raise InputError(f"MNIST {part} files not found in {str(root)!r}: put {EXPECTED}")
        x, y = read_idx(images), read_idx(labels)
        source = images
    if x.ndim != 3:
        raise InputError(
            f"MNIST images in {str(source)!r} have shape {x.shape}; expected (n, h, w)"
        )
    x = x.reshape(len(x), -1) if flatten else x[:, None]
    info = dict(part=part, flatten=flatten, classes=10, source=str(source))
    return as_dataset(x, y, "mnist", info, scale=255.0)
