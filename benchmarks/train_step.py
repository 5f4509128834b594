"""One full-batch GD step of Du et al. 2019's ResNet (n = 256, m = 1024, H = 6): refnets vs PyTorch CPU.

    python benchmarks/train_step.py [--quick] [--json FILE]

A step is forward, L = ½ Σᵢ (f(xᵢ) − yᵢ)², backward and θ ← θ − η ∇L on every weight, in float64.
refnets: :class:`refnets.models.du2019.ResNet`, :func:`refnets.losses.half_squared_sum`,
:class:`refnets.optim.GD`. PyTorch: the same network with the same weights in
``torch.nn.functional`` (:func:`ntk.torch_twin`), ``loss.backward()`` and an in-place update
under ``no_grad``. Both on 2 threads, calls alternating, medians; ratio = torch time / refnets time.
"""
from __future__ import annotations

import sys
from pathlib import Path

import refnets  # noqa: F401  (before numpy: it sets OpenBLAS's idle spin, see refnets/__init__.py)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ntk as _ntk  # noqa: E402  (the torch twin and the networks)
from _timing import alternating_medians, cli, set_threads  # noqa: E402

LR = 1e-3


def run(quick=False) -> list[dict]:
    import torch

    from refnets.losses import half_squared_sum
    from refnets.optim import GD

    set_threads()
    model, x = _ntk.du_resnet(n=256, m=1024, H=6)
    y = np.random.default_rng(5).standard_normal((x.shape[0], 1))
    f, P = _ntk.torch_twin(model)          # copies of the initial weights
    for p in P.values():
        p.requires_grad_(True)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    opt = GD(model, LR)

    def step_ref():
        out = model.forward(x)
        loss, d = half_squared_sum(out, y)
        model.backward(d)
        opt.step()
        return loss

    def step_torch():
        out = f(P, tx)
        loss = 0.5 * ((out - ty) ** 2).sum()
        grads = torch.autograd.grad(loss, list(P.values()))
        with torch.no_grad():
            for p, g in zip(P.values(), grads):
                p -= LR * g
        return float(loss.detach())

    # same trajectory (a sanity check): three steps each from the same weights
    for _ in range(3):
        lr_, lt_ = step_ref(), step_torch()
        if abs(lr_ - lt_) > 1e-9 * abs(lt_):
            raise AssertionError(f"train_step benchmark: losses differ, refnets {lr_} vs torch {lt_}")
    a, b, _, _ = alternating_medians(step_ref, step_torch, 5 if quick else 9)
    return [{"name": "GD step Du ResNet n256 m1024 H6", "dtype": "float64", "refnets_s": a, "torch_s": b,
             "ratio": b / a}]


if __name__ == "__main__":
    sys.exit(cli(run, __doc__.splitlines()[0]))
