"""The cross-check kit: state_dict <-> refnets parameters for every layer, containers and paper models,
and comparisons of outputs, gradients and Gram matrices that catch a real difference."""
import subprocess
import sys

import numpy as np
import pytest

from refnets import Conv1d, Conv2d, Dense, Flatten, MaxPool2d, ReLU, Residual, Sequential
from refnets.crosscheck import (crosscheck, from_state_dict, load_from_torch, load_into_torch, match_names,
                                refnets_name, relative_error, to_state_dict, torch_name)


def test_import_refnets_never_imports_torch():
    code = ("import sys, refnets, refnets.crosscheck, refnets.io, refnets.sweep, refnets.experiments; "
            "bad = [m for m in ('torch', 'joblib', 'dask') if m in sys.modules]; assert not bad, bad")
    p = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]


def test_names():
    assert torch_name("0.W") == "0.weight" and torch_name("branch.1.b") == "branch.1.bias"
    assert torch_name("W") == "weight" and torch_name("W1") == "W1" and torch_name("0.w") == "0.w"
    for n in ["0.W", "branch.1.b", "A", "W1", "x.y.w"]:
        assert refnets_name(torch_name(n)) == n


def test_relative_error():
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0 and relative_error([0.0], [0.0]) == 0.0
    assert relative_error([1.0], [3.0]) == pytest.approx(0.5)
    assert relative_error([1.0, 2.0], [1.0]) == float("inf")
    assert relative_error([np.nan], [1.0]) == float("inf")


torch = pytest.importorskip("torch")
nn = torch.nn


def _x(rng, *shape):
    return rng.standard_normal(shape)


class TorchResidual(nn.Module):
    def __init__(self, branch, scale):
        super().__init__()
        self.branch, self.scale = branch, scale

    def forward(self, x):
        return x + self.scale * self.branch(x)


CASES = {
    "dense": (lambda: Dense(5, 3, bias=True, rng=1), lambda: nn.Linear(5, 3), (4, 5)),
    "conv2d_groups": (lambda: Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, rng=2),
                      lambda: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
                      (3, 4, 7, 6)),
    "conv1d_groups": (lambda: Conv1d(4, 4, 3, stride=2, padding=1, groups=4, bias=False, rng=3),
                      lambda: nn.Conv1d(4, 4, 3, stride=2, padding=1, groups=4, bias=False), (2, 4, 9)),
    "sequential": (lambda: Sequential(Conv2d(2, 3, 3, padding=1, rng=4), ReLU(), MaxPool2d(2), Flatten(),
                                      Dense(3 * 3 * 3, 2, bias=True, rng=5)),
                   lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                         nn.Linear(27, 2)), (3, 2, 7, 6)),
    "residual": (lambda: Sequential(Dense(4, 6, rng=6), Residual(Sequential(Dense(6, 6, rng=7), ReLU()), scale=0.5)),
                 lambda: nn.Sequential(nn.Linear(4, 6, bias=False),
                                       TorchResidual(nn.Sequential(nn.Linear(6, 6, bias=False), nn.ReLU()), 0.5)),
                 (5, 4)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_layers_agree_after_mapping_both_ways(case, rng):
    make_ours, make_theirs, shape = CASES[case]
    model, net = make_ours(), make_theirs().double()
    x = _x(rng, *shape)
    names = load_into_torch(model, net)
    assert set(names.values()) == {n for n, _ in net.named_parameters()}
    report = crosscheck(model, net, x)
    report.assert_close(1e-12)
    assert {"forward", "dx"} <= set(report.errors) and all(f"gram:{k}" in report.errors for k in model.parameters())
    assert all(f"grad:{k}" in report.errors for k in model.parameters())
    # torch -> refnets: fresh torch values land in a refnets model with other values
    net2 = make_theirs().double()
    load_from_torch(net2, model)
    crosscheck(model, net2, x, gram=False).assert_close(1e-12)
    sd = to_state_dict(model)
    assert set(sd) == {torch_name(k) for k in model.parameters()}
    back = from_state_dict(net2.state_dict(), model)
    assert all(np.array_equal(back[k], v) for k, v in model.parameters().items())


def test_paper_model_by_registration_order(rng):
    from refnets.models.allenzhu2019 import FCNet
    model = FCNet(6, 8, 2, d_out=2, rng=3)
    net = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 8, bias=False), nn.ReLU(),
                        nn.Linear(8, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False)).double()
    with pytest.raises(ValueError, match="Pass names='order'"):
        match_names(model, net)
    mapping = load_into_torch(model, net, names="order")
    assert mapping == {"A": "0.weight", "W1": "2.weight", "W2": "4.weight", "B": "6.weight"}
    report = crosscheck(model, net, _x(rng, 5, 6), names="order")
    report.assert_close(1e-12)
    assert str(report).splitlines()[0].startswith("quantity")
    explicit = dict(mapping, B="6.weight")
    assert match_names(model, net, names=explicit) == mapping


def test_a_real_difference_is_reported(rng):
    model = Sequential(Dense(4, 6, rng=1), ReLU(), Dense(6, 1, rng=2))
    net = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Tanh(), nn.Linear(6, 1, bias=False)).double()
    load_into_torch(model, net)
    report = crosscheck(model, net, _x(rng, 5, 4))
    assert not report.ok(1e-6)
    assert report.errors["forward"] > 1e-3 and report.worst()[1] > 1e-3
    with pytest.raises(AssertionError, match="worst .* relative error"):
        report.assert_close(1e-6)


def test_mismatches_name_the_tensor():
    model = Sequential(Dense(4, 6, rng=1), ReLU(), Dense(6, 2, rng=2))
    with pytest.raises(ValueError, match=r"parameter '2.W' -> '2.weight': refnets shape \(2, 6\), torch shape \(3, 6\)"):
        load_into_torch(model, nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 3, bias=False)))
    with pytest.raises(ValueError, match="the refnets model has 2 parameters"):
        match_names(model, nn.Linear(4, 6, bias=False), names="order")
    with pytest.raises(ValueError, match="not parameters of the refnets model"):
        match_names(model, nn.Linear(4, 6), names={"nope": "weight"})
