"""Digit images and the digit-detection task of Brutzkus & Globerson (2021), Sec. 7, Fig. 3c / Fig. 5.

Sources
-------
* :func:`load_digits` — the 1797 8×8 digits that scikit-learn ships (the ``baselines`` extra; imported
  lazily, so ``import refnets`` never needs scikit-learn). The offline default.
* :func:`read_idx` / :func:`load_mnist` — real MNIST from IDX files (optionally gzipped) when the user
  has them. Truncated, corrupt or mismatched files give a ValueError naming the file and what was
  expected.

The detection task
------------------
Each input holds ``n_digits`` (4 in the paper) digit images side by side. y = +1: one uniform position
holds a 3, y = −1: a 5; every other position holds a uniformly drawn digit from the spurious classes
(all digits but 3 and 5). Stored as in :mod:`refnets.data.patterns`: the flat vector
x = (x[1], …, x[n]) with x[j] the j-th image flattened (C order), so ConvPool's non-overlapping
convolution with kernel = stride = h·w sees one digit per position. Pixels are scaled to [0, 1]
(R: the paper does not say how MNIST was scaled).

Shapes: images (N, h, w) float64; labels (N,) int64; task inputs (m, n_digits·h·w); y (m,) of ±1.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..layers.base import as_rng

#: IDX type codes (third byte of the magic number) -> big-endian dtype.
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


# ------------------------------------------------------------------------- sources
def load_digits():
    """scikit-learn's bundled 8×8 digits: (images (1797, 8, 8) float64 in [0, 1], labels (1797,) int64).

    Raises ImportError with an install hint when scikit-learn (the ``baselines`` extra) is missing.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("refnets.data.digits.load_digits needs scikit-learn (pip install 'refnets[baselines]'); "
                          "or pass MNIST IDX files to load_mnist") from e
    b = _sk_load()
    return b.images.astype(np.float64) / 16.0, b.target.astype(np.int64)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format; ``.gz`` is decompressed) into an array.

    Format: magic = two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64) and the number of dimensions D; then D big-endian uint32 sizes;
    then the data, big-endian, C order. Anything else — a short header, a nonzero first byte, an
    unknown type code, fewer or more data bytes than the sizes promise, an unreadable gzip stream —
    is a ValueError naming the file and what was expected.

    Returns an array of the file's shape, in native byte order.
    """
    path = Path(path)
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"read_idx: {path}: cannot read the file ({e}); expected an IDX file, "
                         f"optionally gzip-compressed") from e
    if len(raw) < 4:
        raise ValueError(f"read_idx: {path}: {len(raw)} bytes, expected at least the 4-byte IDX magic number "
                         f"(file truncated?)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"read_idx: {path}: magic number starts with bytes {raw[0]:#04x} {raw[1]:#04x}, expected "
                         f"0x00 0x00; not an IDX file (or a gzip file without the .gz suffix)")
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        raise ValueError(f"read_idx: {path}: unknown IDX type code {code:#04x}; expected one of "
                         f"{', '.join(f'{c:#04x}' for c in IDX_TYPES)}")
    if ndim == 0:
        raise ValueError(f"read_idx: {path}: the header declares 0 dimensions, expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {path}: header declares {ndim} dimensions ({header} header bytes), but the "
                         f"file has only {len(raw)} bytes (truncated)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "trailing bytes"
        raise ValueError(f"read_idx: {path}: shape {shape} of {dtype.name} needs {expected} data bytes, the file "
                         f"has {got} ({what})")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file (the inverse of :func:`read_idx`; ``.gz`` compresses)."""
    array = np.asarray(array)
    codes = {v.str.lstrip("<>|="): k for k, v in IDX_TYPES.items()}
    key = array.dtype.newbyteorder(">").str.lstrip("<>|=")
    if key not in codes:
        raise TypeError(f"write_idx: dtype {array.dtype} has no IDX type code; use one of "
                        f"{[str(v) for v in IDX_TYPES.values()]}")
    code = codes[key]
    head = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = array.astype(IDX_TYPES[code]).tobytes()
    path = Path(path)
    with (gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")) as f:
        f.write(head + body)


def load_mnist(images_path, labels_path):
    """MNIST images and labels from IDX files: (images (N, h, w) float64 in [0, 1], labels (N,) int64).

    The images file must be 3-D unsigned bytes, the labels file 1-D unsigned bytes with values 0–9,
    and both must hold the same N; otherwise a ValueError names the file(s) and what was expected.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"load_mnist: {images_path}: expected 3-D ubyte images (N, h, w), got shape "
                         f"{images.shape} of {images.dtype}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"load_mnist: {labels_path}: expected 1-D ubyte labels (N,), got shape {labels.shape} "
                         f"of {labels.dtype}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"load_mnist: {images_path} holds {images.shape[0]} images but {labels_path} holds "
                         f"{labels.shape[0]} labels; expected the same number (mismatched files?)")
    if labels.size and labels.max() > 9:
        raise ValueError(f"load_mnist: {labels_path}: labels must be digits 0-9, found {int(labels.max())}")
    return images.astype(np.float64) / 255.0, labels.astype(np.int64)


# ------------------------------------------------------------------------- the task
@dataclass
class DigitDetection:
    """The digit-detection task (Sec. 7, Fig. 5): ``n_digits`` images per input, ``positive`` (3) and
    ``negative`` (5) discriminative, every other digit spurious.

    The image pool is split once (``test_fraction``, from ``seed``) into a train and a test pool, so no
    digit image seen in training appears in a test input.

    Parameters
    ----------
    images : (N, h, w); labels : (N,) ints. ``None`` for both: :func:`load_digits` (8×8, scikit-learn).
    n_digits : positions per input (the paper: 4). positive, negative : the discriminative digits.
    test_fraction : share of every class's images kept for test inputs. seed : the split.

    ``sample(m, split, rng)`` -> x (m, n_digits·h·w), y (m,) of ±1. ``d`` = h·w is the patch size.
    """

    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    n_digits: int = 4
    positive: int = 3
    negative: int = 5
    test_fraction: float = 0.3
    seed: int = 0
    pools: dict = field(init=False, repr=False)

    def __post_init__(self):
        if self.images is None:
            self.images, self.labels = load_digits()
        images = np.asarray(self.images, dtype=np.float64)
        labels = np.asarray(self.labels)
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise ValueError(f"DigitDetection: images must be (N, h, w) and labels (N,), got {images.shape} "
                             f"and {labels.shape}")
        if self.positive == self.negative:
            raise ValueError("DigitDetection: the positive and negative digits must differ")
        self.images, self.labels = images, labels
        self.shape = images.shape[1:]
        self.d = int(np.prod(self.shape))
        spurious = sorted(set(np.unique(labels).tolist()) - {self.positive, self.negative})
        if not spurious:
            raise ValueError("DigitDetection: no spurious digit class in the labels")
        self.spurious = spurious
        rng = np.random.default_rng(self.seed)
        self.pools = {"train": {}, "test": {}}
        for c in [self.positive, self.negative] + spurious:
            idx = rng.permutation(np.nonzero(labels == c)[0])
            if idx.size < 2:
                raise ValueError(f"DigitDetection: digit {c} has {idx.size} images; need at least 2 to split")
            cut = min(max(1, int(round(self.test_fraction * idx.size))), idx.size - 1)
            self.pools["test"][c], self.pools["train"][c] = idx[:cut], idx[cut:]

    def sample(self, m: int, split: str = "train", rng=None):
        """m inputs with labels: x (m, n_digits·d), y (m,) of ±1."""
        if split not in self.pools:
            raise ValueError(f"DigitDetection.sample: split must be 'train' or 'test', got {split!r}")
        rng = as_rng(rng)
        pool = self.pools[split]
        n = self.n_digits
        y = rng.choice(np.array([-1.0, 1.0]), size=m)
        classes = rng.choice(np.array(self.spurious), size=(m, n))
        pos = rng.integers(0, n, size=m)
        classes[np.arange(m), pos] = np.where(y > 0, self.positive, self.negative)
        which = np.empty((m, n), dtype=np.int64)
        for c in np.unique(classes):
            mask = classes == c
            which[mask] = rng.choice(pool[int(c)], size=int(mask.sum()))
        return self.images[which].reshape(m, n * self.d), y

    def as_images(self, x: np.ndarray) -> np.ndarray:
        """(m, n_digits·d) -> (m, h, n_digits·w): the digits side by side, for display (Fig. 5)."""
        h, w = self.shape
        m = x.shape[0]
        return x.reshape(m, self.n_digits, h, w).transpose(0, 2, 1, 3).reshape(m, h, self.n_digits * w)


def digit_detection(m: int, split: str = "train", rng=None, **task_kwargs):
    """Convenience: ``DigitDetection(**task_kwargs).sample(m, split, rng)``."""
    return DigitDetection(**task_kwargs).sample(m, split, rng)
