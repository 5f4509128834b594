"""Parameters save to .npz and load back exactly; truncated, corrupt or mismatched files are rejected
with an error naming the file and the tensor; configurations save as JSON."""
import json

import numpy as np
import pytest

from refnets import Conv2d, Dense, Flatten, ReLU, Sequential
from refnets.io import (ParameterFileError, build_model, load_config, load_parameters, model_config,
                        read_parameters, save_config, save_parameters)
from refnets.layers.base import Layer


def small_cnn(seed, dtype=np.float64):
    return Sequential(Conv2d(2, 3, 3, padding=1, groups=1, rng=seed, dtype=dtype), ReLU(), Flatten(),
                      Dense(3 * 4 * 4, 2, bias=True, rng=seed + 1, dtype=dtype))


def _same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_is_exact(tmp_path, dtype):
    src, dst = small_cnn(1, dtype), small_cnn(7, dtype)
    src.parameters()["0.W"][0, 0, 0, 0] = np.nextafter(dtype(1), dtype(2))  # a value that rounding would lose
    path = save_parameters(src, tmp_path / "m.npz")
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load_parameters(dst, path)
    assert list(loaded) == ["0.W", "0.b", "3.W", "3.b"]
    for k, a in src.parameters().items():
        assert _same_bits(a, dst.parameters()[k]), k
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(dtype)
    assert _same_bits(src.forward(x), dst.forward(x))


def test_paper_model_and_plain_dict_round_trip(tmp_path):
    from refnets.models.allenzhu2019 import FCNet
    a, b = FCNet(5, 8, 2, rng=1), FCNet(5, 8, 2, rng=2)
    load_parameters(b, save_parameters(a, tmp_path / "a.npz"))
    assert all(_same_bits(v, b.params[k]) for k, v in a.params.items())
    d = {"x": np.arange(6.0).reshape(2, 3), "y": np.array([1, 2], dtype=np.int32)}
    back = read_parameters(save_parameters(d, tmp_path / "d.npz"))
    assert all(_same_bits(d[k], back[k]) for k in d)


def test_plain_numpy_savez_file_loads(tmp_path):
    m = small_cnn(1)
    np.savez(tmp_path / "plain.npz", **{k: v * 2 for k, v in m.parameters().items()})
    before = {k: v.copy() for k, v in m.parameters().items()}
    load_parameters(m, tmp_path / "plain.npz")
    assert all(np.array_equal(m.parameters()[k], 2 * before[k]) for k in before)


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3, 0.5, 0.8, 0.97, 0.999])
def test_truncated_file_is_rejected(tmp_path, fraction):
    raw = save_parameters(small_cnn(1), tmp_path / "m.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(raw[:int(len(raw) * fraction)])
    with pytest.raises(ParameterFileError, match="bad.npz"):
        load_parameters(small_cnn(2), bad)


def test_any_flipped_byte_is_rejected_or_harmless(tmp_path):
    """Corruption anywhere: either a clear error, or (a byte the format does not use, e.g. a zip
    timestamp) the exact parameters; never a silently different model."""
    src = small_cnn(1)
    raw = save_parameters(src, tmp_path / "m.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    rejected = 0
    for pos in range(0, len(raw), 7):
        b = bytearray(raw)
        b[pos] ^= 0x5A
        bad.write_bytes(bytes(b))
        dst = small_cnn(2)
        try:
            load_parameters(dst, bad)
        except ParameterFileError as e:
            rejected += 1
            assert "bad.npz" in str(e)
            continue
        assert all(_same_bits(v, dst.parameters()[k]) for k, v in src.parameters().items()), pos
    assert rejected > 0.8 * len(range(0, len(raw), 7))


def test_wrong_shape_names_the_tensor_and_leaves_the_model_untouched(tmp_path):
    path = save_parameters(small_cnn(1), tmp_path / "m.npz")
    other = Sequential(Conv2d(2, 3, 3, padding=1, rng=3), ReLU(), Flatten(), Dense(3 * 4 * 4, 5, bias=True, rng=4))
    before = {k: v.copy() for k, v in other.parameters().items()}
    with pytest.raises(ParameterFileError, match=r"tensor '3.W': expected shape \(5, 48\) \(the model's\), "
                                                 r"got \(2, 48\)"):
        load_parameters(other, path)
    assert all(np.array_equal(before[k], v) for k, v in other.parameters().items())


def test_wrong_dtype_missing_and_extra_tensors(tmp_path):
    path = save_parameters(small_cnn(1), tmp_path / "m.npz")
    with pytest.raises(ParameterFileError, match="tensor '0.W': expected dtype float32 .* got float64"):
        load_parameters(small_cnn(1, np.float32), path)
    fewer = Sequential(Conv2d(2, 3, 3, padding=1, rng=3), ReLU(), Flatten(), Dense(48, 2, rng=4))
    with pytest.raises(ParameterFileError, match=r"not in the model: \['3.b'\]"):
        load_parameters(fewer, path)
    assert list(load_parameters(fewer, path, strict=False)) == ["0.W", "0.b", "3.W"]
    more = small_cnn(1)
    partial = save_parameters({"0.W": more.parameters()["0.W"]}, tmp_path / "p.npz")
    with pytest.raises(ParameterFileError, match=r"missing from the file: \['0.b', '3.W', '3.b'\]"):
        load_parameters(more, partial)


def test_not_an_archive(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ParameterFileError, match="not an .npz archive"):
        read_parameters(tmp_path / "one.npy")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ParameterFileError, match="text.npz: not a readable .npz"):
        read_parameters(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError, match="no parameter file"):
        read_parameters(tmp_path / "absent.npz")


def test_header_checksum_catches_a_rewritten_array(tmp_path):
    import zipfile
    path = save_parameters(small_cnn(1), tmp_path / "m.npz")
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    import io
    buf = io.BytesIO()
    np.save(buf, np.ones((3,)))  # a valid array with a valid zip CRC, but not the saved one
    members["0.b.npy"] = buf.getvalue()
    with zipfile.ZipFile(tmp_path / "evil.npz", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(ParameterFileError, match="tensor '0.b' fails its SHA-256 checksum"):
        read_parameters(tmp_path / "evil.npz")


class Scaled(Layer):
    """A layer that describes itself with config()."""

    def __init__(self, n, factor=2.0, name=None):
        super().__init__(name)
        self.n, self.factor = n, factor
        self.params["w"] = np.full(n, factor)

    def config(self):
        return {"n": self.n, "factor": self.factor}


def test_configuration_as_json(tmp_path):
    m = small_cnn(1)
    cfg = model_config(m)
    assert cfg["class"] == "refnets.layers.containers.Sequential"
    dense = cfg["children"]["3"]
    assert dense["attributes"]["in_features"] == 48 and dense["parameters"]["b"] == {"shape": [2], "dtype": "float64"}
    assert cfg["children"]["0"]["attributes"]["kernel_size"] == [3, 3]
    path = save_config(m, tmp_path / "m.json", extra={"lr": 0.1})
    back = load_config(path)
    assert back["extra"] == {"lr": 0.1} and back["children"] == json.loads(json.dumps(cfg["children"]))
    with pytest.raises(ValueError, match="has no config\\(\\) method"):
        build_model(back)
    s = Scaled(3, 0.5)
    cfg = load_config(save_config(s, tmp_path / "s.json"))
    assert cfg == {"class": "test_io.Scaled", "args": {"n": 3, "factor": 0.5}}
    with pytest.raises(ValueError, match="rebuilds classes of \\['refnets'\\] only"):
        build_model(cfg)
    r = build_model(cfg, modules=("test_io",))
    assert isinstance(r, Scaled) and r.n == 3 and r.factor == 0.5
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a JSON model configuration"):
        load_config(tmp_path / "bad.json")
