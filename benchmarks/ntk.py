"""Empirical NTK G(0): refnets' per-layer factorisation against torch.func, in the same run.

    python benchmarks/ntk.py [--quick] [--json FILE]

Networks (performance issue #7): Du et al. 2019's ResNet (n = 256, m = 1024, H = 6) and their
convolutional ResNet (n = 64, p = 64, m = 256, H = 3), from :mod:`refnets.models.du2019`.

* refnets: :func:`refnets.ntk.empirical_ntk` — one forward, one backward with dout = 1, then each
  layer's ``gram()`` ((ΔΔᵀ) ⊙ (XXᵀ) for dense layers; for convolutions the per-sample form
  built one block of patch rows at a time, or the trace form, whichever costs less). Peak memory by ``tracemalloc`` (NumPy allocations made during the call), as a
  ratio to the inputs — data x and parameters θ — plus the n×n output (``peak_over_x_and_nn``
  leaves θ out; ``jacobian_bytes`` is the n×P Jacobian that is never formed).
* torch: the same network with the same weights written in ``torch.nn.functional`` (a generic
  translation of the refnets layer tree, :func:`torch_twin`), and G = J Jᵀ from per-sample
  Jacobians ``torch.func.vmap(torch.func.jacrev(f))`` computed in chunks of samples
  (:func:`torch_ntk`). The conv ResNet's n×P Jacobian (0.2 GB) is kept, each chunk computed once,
  in chunks of CONV_CHUNK = 8 samples: the fastest torch.func form we measured (medians of 5
  alternating calls: chunks of 4, 8, 16, 32, 64 took 561, 469, 520, 640, 597 ms; the jvp/vjp
  contraction, vmapped over pairs of samples, took 3.6 s for 8 of the 64 rows of G). The ResNet's
  (11 GB) does not fit: its chunks of 32 are contracted pairwise and recomputed per pair (36 chunk
  Jacobians instead of 8, so its ratio overstates by up to 4.5×; it is in the hundreds).

Both in float64; the records say whether the two Grams agree to 1e-10 relative (max-norm). Timing:
for the conv ResNet the two libraries' calls alternate, 5 timed calls each, each after an untimed
call of the same library (``_timing.alternating_medians``); a torch.func run of the ResNet takes
about a minute, so there refnets is timed 5 times and torch once. For the conv ResNet the
memory-bounded mode ``empirical_ntk(block=1)`` is measured too (tagged ``block=1``, one call): G from
passes over pairs of samples, the activations of two samples held at a time.
"""
from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import refnets  # noqa: F401  (before numpy: it sets OpenBLAS's idle spin, see refnets/__init__.py)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternating_medians, cli, median_time, set_threads  # noqa: E402

# Samples per torch.func chunk for the conv ResNet (see the module docstring).
CONV_CHUNK = 8


# --------------------------------------------------------------------------- the networks
def du_resnet(n=256, m=1024, H=6, d=64, seed=0):
    """(model, x): Du et al.'s ResNet (Eq. 2) and n unit-norm inputs."""
    from refnets.models.du2019 import ResNet
    x = np.random.default_rng(seed + 1).standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return ResNet(d=d, m=m, H=H, rng=seed), x


def du_conv_resnet(n=64, p=64, m=256, H=3, d=4, seed=0):
    """(model, x): Du et al.'s convolutional ResNet (Eq. 3) and n inputs (d channels, p positions, ‖x‖_F = 1)."""
    from refnets.models.du2019 import ConvResNet
    x = np.random.default_rng(seed + 1).standard_normal((n, d, p))
    x /= np.linalg.norm(x.reshape(n, -1), axis=1)[:, None, None]
    return ConvResNet(d=d, p=p, m=m, H=H, rng=seed), x


# ------------------------------------------------------------------- the PyTorch twin
def torch_twin(model):
    """f(params, x) in torch.nn.functional for a refnets layer tree, and its params (dict of tensors)."""
    import torch
    import torch.nn.functional as F

    from refnets.layers import activations as A
    from refnets.layers import containers as Cn
    from refnets.layers.conv import Conv1d, Conv2d
    from refnets.layers.dense import Dense

    def apply(layer, P, prefix, x):
        if isinstance(layer, Cn.Sequential):
            for name, child in layer.layers.items():
                x = apply(child, P, f"{prefix}{name}.", x)
            return x
        if isinstance(layer, Cn.Residual):
            return x + layer.scale * apply(layer.branch, P, f"{prefix}branch.", x)
        if isinstance(layer, Cn.Flatten):
            return x.reshape(x.shape[0], -1)
        if isinstance(layer, Cn.Reshape):
            return x.reshape((x.shape[0],) + layer.shape)
        if isinstance(layer, Dense):
            out = layer.scale * (x @ P[prefix + "W"].T)
            return out + P[prefix + "b"] if "b" in layer.params else out
        if isinstance(layer, Conv2d):                 # Conv1d included
            conv1 = isinstance(layer, Conv1d)
            pt, pb, pl, pr = layer.padding
            W = P[prefix + "W"] * layer.scale
            b = P.get(prefix + "b")
            if conv1:
                xx = F.pad(x, (pl, pr))
                return F.conv1d(xx, W, b, stride=layer.stride[1], dilation=layer.dilation[1], groups=layer.groups)
            xx = F.pad(x, (pl, pr, pt, pb))
            return F.conv2d(xx, W, b, stride=layer.stride, dilation=layer.dilation, groups=layer.groups)
        if isinstance(layer, A.Softplus):
            return F.softplus(x)
        if isinstance(layer, A.ReLU):
            return F.relu(x)
        if isinstance(layer, A.Tanh):
            return torch.tanh(x)
        if isinstance(layer, A.Logistic):
            return torch.sigmoid(x)
        if isinstance(layer, A.Identity):
            return x
        if type(layer).__name__ == "Scale" and not layer.params:     # du2019.Scale: a fixed multiplier
            return layer.scale * x
        # a model class wrapping a tree (e.g. du2019 models): descend into its only child
        ch = layer.children()
        if len(ch) == 1 and not layer.params:
            (name, child), = ch.items()
            return apply(child, P, f"{prefix}{name}.", x)
        raise TypeError(f"torch_twin: no translation for {type(layer).__name__}")

    params = {k: torch.from_numpy(np.array(v)) for k, v in model.parameters().items()}

    def f(P, x):
        return apply(model, P, "", x)

    return f, params


def torch_ntk(f, params, x, chunk=32, cache_bytes=2 << 30):
    """G = J Jᵀ from per-sample Jacobians ``vmap(jacrev(f))``, ``chunk`` samples at a time.

    When the whole n×P Jacobian takes at most ``cache_bytes``, every chunk's J is computed once and
    kept, and G is one product (the conv ResNet: 0.2 GB). Otherwise (the ResNet: n·P·8 = 11 GB) the
    chunks are contracted pairwise and a chunk's J is recomputed for each pair it is in.
    """
    import torch
    from torch.func import jacrev, vmap

    def single(P, xi):
        return f(P, xi[None]).reshape(())

    jac = vmap(jacrev(single), in_dims=(None, 0))
    n = x.shape[0]
    starts = list(range(0, n, chunk))

    def J(i0):
        Jd = jac(params, x[i0:i0 + chunk])
        return torch.cat([v.reshape(v.shape[0], -1) for v in Jd.values()], dim=1)

    n_params = sum(v.numel() for v in params.values())
    if n * n_params * x.element_size() <= cache_bytes:
        Jall = torch.cat([J(i0) for i0 in starts])
        return Jall @ Jall.T
    G = torch.empty((n, n), dtype=x.dtype)
    for a, i0 in enumerate(starts):
        Ja = J(i0)
        for j0 in starts[a:]:
            Jb = Ja if j0 == i0 else J(j0)
            blk = Ja @ Jb.T
            G[i0:i0 + chunk, j0:j0 + chunk] = blk
            G[j0:j0 + chunk, i0:i0 + chunk] = blk.T
            del Jb
    return G


def _peak_and_time(model, x, repeats, block=None):
    """(G, peak bytes of NumPy allocations during one call, median seconds or None if repeats is 0)."""
    from refnets.ntk import empirical_ntk

    G = empirical_ntk(model, x, block=block)                  # warm up (Numba compilation)
    tracemalloc.start()
    G = empirical_ntk(model, x, block=block)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    t = median_time(lambda: empirical_ntk(model, x, block=block), repeats) if repeats else None
    return G, peak, t


def bench_one(label, model, x, repeats, torch_repeats, block=None, chunk=32):
    """Time and memory records of the one-pass G; with ``block``, also of the memory-bounded mode
    (``empirical_ntk(block=block)``), against the same torch timing. With torch_repeats > 1 the two
    libraries' calls alternate (``alternating_medians``, ``repeats`` each); with 1 (a torch.func run
    of minutes) refnets is timed ``repeats`` times, then torch once."""
    import torch

    from refnets.ntk import empirical_ntk

    G, peak, t_ref = _peak_and_time(model, x, repeats if torch_repeats == 1 else 0)

    f, params = torch_twin(model)
    tx = torch.from_numpy(x)
    with torch.no_grad():
        u_t = f(params, tx).numpy().ravel()
    u_r = model.forward(x).ravel()
    if np.max(np.abs(u_t - u_r)) > 1e-10 * max(1.0, np.max(np.abs(u_r))):
        raise AssertionError(f"ntk benchmark {label}: the torch twin computes another function")
    Gt = None

    def run_torch():
        nonlocal Gt
        Gt = torch_ntk(f, params, tx, chunk)
    if torch_repeats == 1:
        t_torch = median_time(run_torch, 1)
    else:
        t_ref, t_torch, _, _ = alternating_medians(lambda: empirical_ntk(model, x), run_torch, repeats)
    Gt = Gt.numpy()
    io_bytes = x.nbytes + G.nbytes
    theta_bytes = sum(v.nbytes for v in model.parameters().values())

    def records(tag, G, peak, t_ref):
        err = float(np.max(np.abs(G - Gt)) / np.max(np.abs(Gt)))
        return [
            {"name": f"empirical NTK G(0) {label}{tag}", "dtype": "float64", "refnets_s": t_ref, "torch_s": t_torch,
             "ratio": t_torch / t_ref, "rel_err": err, "equal_1e-10": err <= 1e-10,
             "n_params": int(model.n_parameters())},
            {"name": f"NTK peak memory / (x + θ + n×n) {label}{tag}", "dtype": "float64", "refnets_s": t_ref,
             "torch_s": None, "ratio": peak / (io_bytes + theta_bytes), "peak_bytes": int(peak),
             "io_bytes": int(io_bytes), "theta_bytes": int(theta_bytes), "peak_over_x_and_nn": peak / io_bytes,
             "jacobian_bytes": int(x.shape[0] * theta_bytes)},
        ]
    recs = records("", G, peak, t_ref)
    if block is not None:
        recs += records(f" block={block}", *_peak_and_time(model, x, 1, block))
    return recs


def run(quick=False) -> list[dict]:
    set_threads()
    r1 = 3 if quick else 5
    recs = []
    model, x = du_resnet()
    # one torch.func run of the ResNet takes about a minute (n·P = 1.4e9 Jacobian entries): timed once
    recs += bench_one("Du ResNet n256 m1024 H6", model, x, r1, 1)
    model, x = du_conv_resnet()
    # alternating calls, 5 repeats each; and its memory-bounded mode: one sample per block, two
    # samples' activations at a time (15–25 s, once)
    recs += bench_one("Du conv ResNet n64 p64 m256 H3", model, x, r1, r1, block=1, chunk=CONV_CHUNK)
    return recs


def show(recs) -> str:
    """Seconds, the ratio, and the relative error (timing records) or the peak memory (memory records)."""
    lines = []
    for r in recs:
        ts = f"{r['torch_s']:8.3f}s" if r.get("torch_s") else f"{'-':>9}"
        extra = f"rel_err {r['rel_err']:.1e}" if "rel_err" in r else f"peak {r['peak_bytes'] / 2**20:.1f} MiB"
        lines.append(f"{r['name']:<58} {r['refnets_s']:8.3f}s {ts} {r['ratio']:8.2f}  {extra}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli(run, __doc__.splitlines()[0], show=show))
