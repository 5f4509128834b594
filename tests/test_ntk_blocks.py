"""empirical_ntk(block=b): G assembled from passes over pairs of sample blocks equals the one-pass G,
holds fewer samples' activations, and refuses a bad block."""
import tracemalloc

import numpy as np
import pytest

from conftest import rel_error
from refnets.models.du2019 import ConvResNet, ResNet
from refnets.ntk import empirical_ntk


def _models():
    rng = np.random.default_rng(3)
    x_fc = rng.standard_normal((7, 5))
    x_conv = rng.standard_normal((7, 3, 9))
    return [(ResNet(d=5, m=12, H=3, rng=1), x_fc), (ConvResNet(d=3, p=9, m=6, H=2, rng=2), x_conv)]


@pytest.mark.parametrize("i", [0, 1])
@pytest.mark.parametrize("block", [1, 3, 4, 6])          # 3, 4, 6 do not divide n = 7: a short last block
def test_blocks_give_the_one_pass_gram(i, block):
    model, x = _models()[i]
    G = empirical_ntk(model, x)
    Gb = empirical_ntk(model, x, block=block)
    assert rel_error(Gb, G) < 1e-13
    assert np.array_equal(Gb, Gb.T)                        # mirrored, exactly symmetric
    assert np.array_equal(Gb, empirical_ntk(model, x, block=block))   # same bits on a rerun
    shares, shares_b = (empirical_ntk(model, x, per_layer=True, params=["*W*"], block=b) for b in (None, block))
    assert set(shares_b) == set(shares) and shares
    for k in shares:
        assert rel_error(shares_b[k], shares[k]) < 1e-13


def test_block_at_least_n_is_the_one_pass():
    model, x = _models()[1]
    assert np.array_equal(empirical_ntk(model, x, block=7), empirical_ntk(model, x))
    assert np.array_equal(empirical_ntk(model, x, block=50), empirical_ntk(model, x))


def test_blocks_hold_fewer_activations():
    """The peak of NumPy allocations during the call falls with the block: 2b samples' activations
    instead of n."""
    model = ConvResNet(d=2, p=32, m=32, H=3, rng=0)
    x = np.random.default_rng(1).standard_normal((48, 2, 32))
    peaks = {}
    for b in (None, 4):
        empirical_ntk(model, x, block=b)
        tracemalloc.start()
        empirical_ntk(model, x, block=b)
        peaks[b] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[4] < 0.4 * peaks[None], peaks


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "4"])
def test_bad_block_is_refused(bad):
    model, x = _models()[0]
    with pytest.raises(ValueError, match="empirical_ntk: block must be a positive integer"):
        empirical_ntk(model, x, block=bad)


def test_only_layers_with_parameters_keep_their_dout():
    """gram() reads a layer's last dout; layers without parameters drop theirs, so the backward's
    intermediate gradients are freed (the NTK's peak memory). Containers keep a marker, no array."""
    model, x = _models()[1]
    model.backward(np.ones(model.forward(x).shape))
    seen = []

    def walk(layer):
        for child in layer.children().values():
            seen.append((isinstance(child._dout, np.ndarray), bool(child.params)))
            walk(child)
    walk(model)
    assert all(kept == has_params for kept, has_params in seen), seen
    assert any(has_params for _, has_params in seen) and any(not has_params for _, has_params in seen)


def test_block_1_meets_the_memory_budget_at_the_benchmark_width():
    """Issue #7's budget, peak ≤ 2 × (x + θ + n×n), for Du's conv ResNet at the benchmark's width
    (m = 256, p = 64, H = 3; 4 samples, block = 1: the peak is per pass, so n does not change it).
    Guards what the block mode allocates per pass: the kernels' buffers (Numba's allocations are
    traced too), the Winograd U, the activations of two samples."""
    model = ConvResNet(d=4, p=64, m=256, H=3, rng=0)
    x = np.random.default_rng(1).standard_normal((4, 4, 64))
    budget = x.nbytes + 4 * 4 * 8 + sum(v.nbytes for v in model.parameters().values())
    empirical_ntk(model, x, block=1)                     # compiled, caches filled
    tracemalloc.start()
    empirical_ntk(model, x, block=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak <= 2 * budget, (peak / budget)
