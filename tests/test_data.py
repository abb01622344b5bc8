"""Tests for reluscope.data: generators, bundled and local data sets, specs, splits."""

from __future__ import annotations

import gzip
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from reluscope.data import (
    Dataset,
    cifar10,
    digits,
    gaussian,
    load_data,
    mnist,
    mnist1d,
    modular,
    read_idx,
    split,
    subsample,
    uniform,
)
from reluscope.errors import InputError


def _same(a: Dataset, b: Dataset) -> bool:
    same_y = (a.y is None and b.y is None) or torch.equal(a.y, b.y)
    return torch.equal(a.x, b.x) and same_y


# --- generated and bundled data sets -------------------------------------------------------


def test_gaussian_shapes_balance_and_generator():
    data = gaussian(n=1001, d=7, classes=3, radius=2.0, noise=0.1, seed=4)
    assert data.x.shape == (1001, 7) and data.x.dtype == torch.float32
    assert data.y.dtype == torch.int64 and data.input_shape == (7,)
    counts = torch.bincount(data.y, minlength=3)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 1001
    means = data.info["means"]
    assert torch.allclose(means.norm(dim=1), torch.full((3,), 2.0))
    for k in range(3):
        resid = data.x[data.y == k] - means[k]
        assert resid.mean(0).abs().max() < 0.05  # 0.1 / sqrt(333) * 5
        assert abs(resid.std().item() - 0.1) < 0.005


def test_gaussian_default_is_the_100d_two_class_task_and_is_seeded():
    data = load_data("gaussian")
    assert data.x.shape == (1000, 100) and torch.bincount(data.y).tolist() == [500, 500]
    assert _same(data, load_data("gaussian", seed=0))
    assert not torch.equal(data.x, load_data("gaussian", seed=1).x)
    assert _same(load_data("gaussian:seed=3"), load_data("gaussian", seed=3))  # spec seed wins


def test_uniform_range_and_determinism():
    data = load_data("uniform:n=2000,d=3,low=-2,high=0.5", seed=1)
    assert data.x.shape == (2000, 3) and data.y is None and data.x.dtype == torch.float32
    assert data.x.min() >= -2 and data.x.max() <= 0.5
    assert data.x.min() < -1.9 and data.x.max() > 0.4
    assert _same(data, uniform(n=2000, d=3, low=-2, high=0.5, seed=1))


def test_digits_scaled_to_unit_interval():
    data = digits()
    assert data.x.shape == (1797, 64) and data.x.dtype == torch.float32
    assert data.x.min() == 0 and data.x.max() == 1
    assert torch.bincount(data.y).min() >= 170 and data.y.max() == 9
    images = load_data("digits:flatten=false")
    assert images.input_shape == (1, 8, 8)
    assert torch.equal(images.x.reshape(1797, 64), data.x) and torch.equal(images.y, data.y)


def test_mnist1d_is_the_packages_generator_and_leaves_global_rng_alone():
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)
    random.seed(123)
    data = mnist1d(n=200, seed=5)
    assert np.random.rand() == np.random.RandomState(123).rand()
    assert random.random() == random.Random(123).random()
    assert data.x.shape == (200, 40) and data.x.dtype == torch.float32
    assert torch.bincount(data.y).tolist() == [20] * 10
    assert abs(data.x.mean().item()) < 1e-5 and abs(data.x.std().item() - 1) < 1e-2
    args = get_dataset_args()
    args.num_samples, args.seed = 200, 5
    ref = make_dataset(args)  # the package's own 80/20 split of the same draw
    assert np.allclose(np.concatenate([ref["x"], ref["x_test"]]), data.x.numpy(), atol=1e-6)
    assert _same(data, load_data("mnist1d:n=200", seed=5))


@pytest.mark.parametrize(
    "op, fn",
    [
        ("add", lambda a, b, p: (a + b) % p),
        ("sub", lambda a, b, p: (a - b) % p),
        ("mul", lambda a, b, p: (a * b) % p),
        ("div", lambda a, b, p: (a * pow(b, -1, p)) % p),
    ],
)
def test_modular_labels_are_exact(op, fn):
    p = 13
    data = load_data(f"modular:p={p},op={op}")
    pairs = p * (p - 1) if op == "div" else p * p
    assert data.x.shape == (pairs, 2 * p) and data.x.dtype == torch.float32
    assert torch.all(data.x.sum(1) == 2)
    a, b = data.x[:, :p].argmax(1), data.x[:, p:].argmax(1)
    expected = [fn(int(i), int(j), p) for i, j in zip(a, b, strict=True)]
    assert data.y.tolist() == expected
    assert len({(int(i), int(j)) for i, j in zip(a, b, strict=True)}) == pairs


def test_modular_parts_are_the_seeded_split():
    full = modular(p=11, train_fraction=0.3, seed=2)
    train, test = split(full, 0.3, seed=2)
    assert _same(load_data("modular:p=11,train_fraction=0.3,part=train", seed=2), train)
    assert _same(load_data("modular:p=11,train_fraction=0.3,part=test", seed=2), test)
    assert len(train) == round(0.3 * 121) and len(train) + len(test) == 121


# --- splits and subsamples -----------------------------------------------------------------


def test_split_partitions_the_points_deterministically():
    data = load_data("uniform:n=50,d=1")
    train, test = split(data, 0.8, seed=1)
    assert len(train) == 40 and len(test) == 10
    rows = {tuple(r) for r in torch.cat([train.x, test.x]).tolist()}
    assert rows == {tuple(r) for r in data.x.tolist()}
    assert _same(train, split(data, 0.8, seed=1)[0])
    assert not _same(train, split(data, 0.8, seed=2)[0])
    assert train.info["part"] == "train" and test.info["part"] == "test"


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, 0.001, "half", True])
def test_bad_split_fractions(fraction):
    with pytest.raises(InputError, match="fraction"):
        split(load_data("uniform:n=50,d=1"), fraction)


def test_subsample():
    data = gaussian(n=100, d=2)
    sub = subsample(data, 10, seed=3)
    assert len(sub) == 10 and _same(sub, subsample(data, 10, seed=3))
    index = [data.x.tolist().index(row) for row in sub.x.tolist()]
    assert index == sorted(index) and torch.equal(sub.y, data.y[index])
    with pytest.raises(InputError, match="n=101"):
        subsample(data, 101)


# --- specs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("nope", "'nope'"),
        ("gaussian:n", "'n'"),
        ("gaussian:n=1,n=2", "'n' given twice"),
        ("gaussian:foo=1", "['foo']"),
        ("gaussian:n=0", "got 0"),
        ("gaussian:n=abc", "got 'abc'"),
        ("gaussian:classes=1", "classes=1"),
        ("gaussian:noise=-1", "noise=-1"),
        ("uniform:low=1,high=0", "low=1.0, high=0.0"),
        ("digits:flatten=maybe", "got 'maybe'"),
        ("mnist1d:n=15", "n=15"),
        ("modular:op=pow", "got 'pow'"),
        ("modular:p=12,op=div", "p must be >= 2 (and prime for op=div); got 12"),
        ("modular:part=valid", "got 'valid'"),
        ("modular:part=train,train_fraction=2", "fraction=2"),
        ("", "''"),
    ],
)
def test_bad_specs_name_the_offending_value(spec, fragment):
    with pytest.raises(InputError) as info:
        load_data(spec)
    assert fragment in str(info.value)


# --- local files ---------------------------------------------------------------------------


def test_npz_round_trip(tmp_path: Path):
    x, y = np.random.default_rng(0).normal(size=(6, 2, 3)), np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load_data(str(tmp_path / "d.npz"))
    assert data.input_shape == (2, 3) and data.x.dtype == torch.float32
    assert torch.equal(data.x, torch.as_tensor(x, dtype=torch.float32))
    assert data.y.tolist() == y.tolist() and data.y.dtype == torch.int64
    np.savez(tmp_path / "first.npz", x.reshape(6, 6), y)  # no 'x': the first array, unlabelled
    first = load_data(tmp_path / "first.npz")
    assert first.y is None and first.x.shape == (6, 6)
    np.save(tmp_path / "x.npy", x)
    assert torch.equal(load_data(str(tmp_path / "x.npy")).x, data.x)


def test_pt_round_trip(tmp_path: Path):
    x = torch.rand(5, 4, dtype=torch.float64)
    torch.save(x, tmp_path / "t.pt")
    assert torch.equal(load_data(str(tmp_path / "t.pt")).x, x.float())
    torch.save({"x": x, "y": torch.tensor([1.0, 0.0, 1.0, 1.0, 3.0])}, tmp_path / "d.pt")
    data = load_data(str(tmp_path / "d.pt"))
    assert data.y.tolist() == [1, 0, 1, 1, 3] and data.y.dtype == torch.int64


def test_pt_files_are_not_unpickled(tmp_path: Path):
    torch.save({"x": torch.zeros(2, 2), "obj": Path("a")}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="cannot read data file"):
        load_data(str(tmp_path / "evil.pt"))


@pytest.mark.parametrize(
    "arrays, fragment",
    [
        ({"x": np.zeros(5)}, "shape (5,)"),
        ({"x": np.zeros((0, 3))}, "shape (0, 3)"),
        ({"x": np.full((2, 2), np.nan)}, "NaN"),
        ({"x": np.zeros((3, 2)), "y": np.zeros(4)}, "3 non-negative integer"),
        ({"x": np.zeros((2, 2)), "y": np.array([0.5, 1])}, "class labels"),
        ({"x": np.zeros((2, 2)), "y": np.array([-1, 1])}, "class labels"),
    ],
)
def test_bad_file_contents(tmp_path: Path, arrays, fragment):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError) as info:
        load_data(str(tmp_path / "bad.npz"))
    assert fragment in str(info.value) and "bad.npz" in str(info.value)


def test_bad_files(tmp_path: Path):
    with pytest.raises(InputError, match="missing.npz' does not exist"):
        load_data(str(tmp_path / "missing.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read data file .*junk.npz"):
        load_data(str(tmp_path / "junk.npz"))
    torch.save({"inputs": torch.zeros(2, 2)}, tmp_path / "keys.pt")
    with pytest.raises(InputError, match=r"keys \['inputs'\]"):
        load_data(str(tmp_path / "keys.pt"))


# --- MNIST and CIFAR-10 from a directory ---------------------------------------------------


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_read_idx_all_types_and_gzip(tmp_path: Path):
    rng = np.random.default_rng(0)
    for code, dtype in [(0x08, np.uint8), (0x0B, np.int16), (0x0D, np.float32)]:
        array = (rng.normal(size=(3, 2, 4)) * 50).astype(dtype)
        (tmp_path / "a.idx").write_bytes(_idx_bytes(array, code))
        (tmp_path / "a.idx.gz").write_bytes(gzip.compress(_idx_bytes(array, code)))
        for name in ("a.idx", "a.idx.gz"):
            back = read_idx(tmp_path / name)
            assert back.dtype == dtype and np.array_equal(back, array)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(InputError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx_bytes(np.zeros((4, 3), np.uint8), 0x08)[:-2])
    with pytest.raises(InputError, match=r"truncated .* shape \(4, 3\)"):
        read_idx(tmp_path / "short")


def _write_mnist(folder: Path, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        for kind, array, code in (("images", images, 0x08), ("labels", labels, 0x08)):
            name = f"{prefix}-{kind}-idx{array.ndim}-ubyte"
            raw = _idx_bytes(array, code)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)


@pytest.mark.parametrize("gz, sub", [(True, ""), (False, "MNIST/raw")])
def test_mnist_from_idx_files(tmp_path: Path, gz, sub):
    images = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[1, 0, 0] = 0, 255
    labels = np.array([3, 1, 4, 1], dtype=np.uint8)
    _write_mnist(tmp_path / sub if sub else tmp_path, images, labels, gz)
    data = load_data("mnist", data_dir=tmp_path)
    assert data.x.shape == (4, 784) and data.x.min() == 0 and data.x.max() == 1
    assert torch.allclose(data.x, torch.as_tensor(images.reshape(4, -1) / 255.0).float())
    assert data.y.tolist() == [3, 1, 4, 1]
    test = load_data("mnist:part=test,flatten=false", data_dir=str(tmp_path))
    assert test.input_shape == (1, 28, 28)
    assert torch.equal(test.x.reshape(4, 784), data.x)


def test_mnist_npz_preferred_and_environment_variable(tmp_path: Path, monkeypatch):
    _write_mnist(tmp_path, np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8), gz=False)
    x = np.full((3, 28, 28), 51, np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=[0, 1, 2], x_test=x[:1], y_test=[7])
    monkeypatch.setenv("RELUSCOPE_DATA_DIR", str(tmp_path))
    data = mnist()
    assert len(data) == 3 and torch.allclose(data.x, torch.full((3, 784), 0.2))
    assert mnist(part="test").y.tolist() == [7]


def test_missing_mnist_and_cifar_say_what_to_put_where(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("RELUSCOPE_DATA_DIR", raising=False)
    with pytest.raises(InputError, match="--data-dir DIR .*train-images-idx3-ubyte"):
        load_data("mnist")
    with pytest.raises(InputError, match="nowhere' for cifar10 does not exist.*data_batch_1"):
        load_data("cifar10", data_dir=tmp_path / "nowhere")
    with pytest.raises(InputError, match="MNIST test files not found in .*t10k-images-idx3"):
        load_data("mnist:part=test", data_dir=tmp_path)
    with pytest.raises(InputError, match="CIFAR-10 train batches not found"):
        cifar10(data_dir=tmp_path)


def _write_cifar(folder: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Six python batches of two images each, pickled like the originals (bytes keys)."""
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=2).tolist()
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = (data, labels)
    return written


def test_cifar10_from_pickle_batches_and_npz(tmp_path: Path):
    written = _write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(1))
    train = load_data("cifar10", data_dir=tmp_path)
    expected = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)]) / 255.0
    assert train.x.shape == (10, 3072) and torch.allclose(train.x, torch.tensor(expected).float())
    assert train.y.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    test = load_data("cifar10:part=test,flatten=false", data_dir=tmp_path)
    assert test.input_shape == (3, 32, 32) and test.y.tolist() == written["test_batch"][1]
    # the same test images as (n, 32, 32, 3) in cifar10.npz are read channel-first too
    hwc = written["test_batch"][0].reshape(2, 3, 32, 32).transpose(0, 2, 3, 1)
    np.savez(tmp_path / "cifar10.npz", x_train=hwc, y_train=[0, 0], x_test=hwc, y_test=[5, 6])
    from_npz = cifar10(part="test", flatten=False, data_dir=tmp_path)
    assert torch.equal(from_npz.x, test.x) and from_npz.y.tolist() == [5, 6]


def test_cifar10_pickle_cannot_run_code(tmp_path: Path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    folder = tmp_path / "cifar10"
    _write_cifar(folder, np.random.default_rng(0))
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(InputError, match="data_batch_3' is not a CIFAR-10 python batch"):
        cifar10(data_dir=tmp_path)
    assert not (tmp_path / "pwned").exists()
