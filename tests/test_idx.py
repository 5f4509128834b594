"""The MNIST IDX reader: round trips, and clear errors on truncated, corrupt and mismatched files."""
import gzip

import numpy as np
import pytest

from refnets.data.digits import load_mnist, read_idx, write_idx


def _header(code, shape):
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, dtype=">u4").tobytes()


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_round_trip(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == "u1":
        a = np.arange(24, dtype="u1").reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", a)
    b = read_idx(tmp_path / "a.idx")
    np.testing.assert_array_equal(a, b)
    assert b.dtype.isnative


def test_reads_hand_written_bytes_and_gzip(tmp_path):
    raw = _header(0x08, (2, 2, 3)) + bytes(range(12))
    (tmp_path / "x-idx3-ubyte").write_bytes(raw)
    with gzip.open(tmp_path / "x-idx3-ubyte.gz", "wb") as f:
        f.write(raw)
    for name in ("x-idx3-ubyte", "x-idx3-ubyte.gz"):
        a = read_idx(tmp_path / name)
        assert a.shape == (2, 2, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a.ravel(), np.arange(12))
    big = _header(0x0C, (2,)) + np.array([1, -2], dtype=">i4").tobytes()
    (tmp_path / "i.idx").write_bytes(big)
    np.testing.assert_array_equal(read_idx(tmp_path / "i.idx"), [1, -2])


@pytest.mark.parametrize("raw, match", [
    (b"\x00\x00", "at least the 4-byte"),
    (b"\x1f\x8b\x08\x01" + bytes(20), "magic number"),
    (bytes([0, 0, 0x07, 1]) + bytes(8), "unknown IDX type code"),
    (bytes([0, 0, 0x08, 3]) + bytes(6), "truncated"),
    (_header(0x08, (4, 5)) + bytes(19), r"needs 20 data bytes, the file has 19 \(truncated\)"),
    (_header(0x08, (4, 5)) + bytes(21), "trailing bytes"),
    (_header(0x0E, (3,)) + bytes(16), "needs 24 data bytes"),
])
def test_bad_files_name_the_file_and_the_expectation(tmp_path, raw, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "images.idx.gz"
    with gzip.open(path, "wb") as f:
        f.write(_header(0x08, (10, 4, 4)) + bytes(160))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="images.idx.gz"):
        read_idx(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.idx")


def test_load_mnist(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(6, 5, 4), dtype=np.uint8)
    labs = np.array([0, 3, 5, 9, 1, 3], dtype=np.uint8)
    write_idx(tmp_path / "img.idx", imgs)
    write_idx(tmp_path / "lab.idx", labs)
    x, y = load_mnist(tmp_path / "img.idx", tmp_path / "lab.idx")
    np.testing.assert_allclose(x, imgs / 255.0)
    np.testing.assert_array_equal(y, labs)
    assert y.dtype == np.int64
    # mismatched counts
    write_idx(tmp_path / "lab5.idx", labs[:5])
    with pytest.raises(ValueError, match="6 images but .*lab5.idx holds 5 labels"):
        load_mnist(tmp_path / "img.idx", tmp_path / "lab5.idx")
    # swapped files, wrong label values
    with pytest.raises(ValueError, match="expected 3-D ubyte images"):
        load_mnist(tmp_path / "lab.idx", tmp_path / "img.idx")
    write_idx(tmp_path / "lab_bad.idx", np.array([0, 1, 2, 3, 4, 12], dtype=np.uint8))
    with pytest.raises(ValueError, match="labels must be digits 0-9"):
        load_mnist(tmp_path / "img.idx", tmp_path / "lab_bad.idx")


def test_digit_detection_reads_mnist_style_arrays(tmp_path):
    from refnets.data.digits import DigitDetection
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(100, 6, 6), dtype=np.uint8)
    labs = np.tile(np.arange(10, dtype=np.uint8), 10)
    write_idx(tmp_path / "i.idx", imgs)
    write_idx(tmp_path / "l.idx", labs)
    task = DigitDetection(*load_mnist(tmp_path / "i.idx", tmp_path / "l.idx"), n_digits=4)
    x, y = task.sample(20, rng=0)
    assert x.shape == (20, 4 * 36) and task.d == 36
