"""One gradient-descent step of Kohler, Krzyżak & Walter (2024)'s network: refnets against the same
model written in PyTorch (CPU, float64), in the same run.

    python benchmarks/kohler_step.py [--quick] [--json FILE]

The configuration of issue #5: K_n = 256 parallel CNNs, L = 2 layers, k = (4, 1) channels, M = 3
(3×3 filters, zero padding at the bottom/right only), logistic squasher, global average pooling
over I_κ (κ = 5), output weights w⁽³⁾; n = 1000 images of 16×16. One step is the forward on all n
images, the gradient of F_n(w) = (1/n)Σ(Yᵢ − f_w(Xᵢ))² + c_n‖w⁽³⁾‖² with respect to every weight
and the update w ← w − λ_n ∇F_n. refnets: :func:`refnets.models.kohler2024.gd_step` (grouped Numba
convolutions, blocks of samples). PyTorch: ``F.pad`` + ``F.conv2d(groups=K_n)`` + ``torch.sigmoid``,
gradients by ``torch.autograd.grad``, in blocks of 100 images
(the whole batch at once needs > 10 GB of autograd buffers).

Both run on 2 threads; medians of 5 repeats each (alternating); ratio = torch time / refnets time
(> 1: refnets is faster). ``--quick`` uses n = 100 images (PyTorch's grouped float64 convolution is
slow enough that n = 1000 takes minutes per step on a 2-core machine).
"""
from __future__ import annotations

import sys
from pathlib import Path

import refnets  # noqa: F401  (before numpy: it sets OpenBLAS's idle spin, see refnets/__init__.py)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternating_medians, cli, set_threads  # noqa: E402

K_N, K, M, D = 256, (4, 1), 3, 16
BLOCK = 100


def _setup(n, seed=0):
    from refnets.models.kohler2024 import KohlerCNN
    rng = np.random.default_rng(seed)
    model = KohlerCNN(D, K_n=K_N, k=K, M=M, A=4.0, rng=seed)
    model.params["w3"][...] = 0.1 * rng.standard_normal(K_N)    # not 0, so every gradient is non-zero
    x = rng.uniform(0, 1, (n, 1, D, D))
    y = (rng.random(n) < 0.5).astype(np.float64)
    return model, x, y


def _torch_step(torch, model, x, y, lam, c_n):
    F = torch.nn.functional
    p = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    tx, ty = torch.tensor(x), torch.tensor(y)
    mask = torch.tensor(np.isin(np.arange(D * D), model.positions).reshape(D, D))

    n = tx.shape[0]

    def step():
        # blocks of BLOCK images, gradients summed: the full batch at once needs > 10 GB of autograd
        # buffers at n = 1000 (a first run was killed); refnets blocks its samples the same way.
        grads = [torch.zeros_like(t) for t in p.values()]
        total = 0.0
        for s in range(0, n, BLOCK):
            o = tx[s:s + BLOCK]
            for r in (1, 2):
                o = torch.sigmoid(F.conv2d(F.pad(o, (0, M - 1, 0, M - 1)), p[f"w{r}"], p[f"w{r}_bias"],
                                           groups=1 if r == 1 else K_N))
            f = o[:, :, mask].mean(2) @ p["w3"]
            part = ((ty[s:s + BLOCK] - f) ** 2).sum() / n
            for g, gi in zip(grads, torch.autograd.grad(part, list(p.values()))):
                g += gi
            total += float(part.detach())
        with torch.no_grad():
            total += c_n * float((p["w3"] ** 2).sum())     # F_n before the step, as refnets' gd_step
            grads[-1] += 2 * c_n * p["w3"]
            for t, g in zip(p.values(), grads):
                t -= lam * g
        return total
    return step


def run(quick=False) -> list:
    import torch
    set_threads()
    from refnets.models.kohler2024 import gd_step
    n = 100 if quick else 1000
    lam, c_n = 1e-3, 1e-3
    model, x, y = _setup(n)
    tstep = _torch_step(torch, model, x, y, lam, c_n)

    def ref():
        return gd_step(model, x, y, lam, c_n)

    # both warm up first in quick mode; at n = 1000 one torch step takes seconds, so it is not repeated
    # (nor led in: a few ms of the other library's idle threads do not matter to steps of seconds)
    r, t, tr, tt = alternating_medians(ref, tstep, 5, warm_torch=quick, lead_in=False)
    name = f"kohler GD step K_n={K_N} L=2 k=(4,1) M=3 n={n} {D}x{D}"
    return [{"name": name, "dtype": "float64", "refnets_s": r, "torch_s": t, "ratio": t / r,
             "refnets_all_s": tr, "torch_all_s": tt}]


if __name__ == "__main__":
    sys.exit(cli(run, __doc__.splitlines()[0]))
