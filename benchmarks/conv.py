"""Convolution forward + backward: refnets (Numba kernels) against PyTorch CPU, in the same run.

    python benchmarks/conv.py [--quick] [--json FILE]

The shapes of the convolution issue (#2) and the layer of Du et al.'s convolutional ResNet (a
Conv1d, run as a 1-row Conv2d), float64 and float32. One timed call is the layer's
forward plus its backward (dx, dW, db) — ``refnets.layers.conv.conv2d_forward`` and
``conv2d_backward`` against ``torch.nn.functional.conv2d`` and ``torch.autograd.grad``. Both
libraries run on 2 threads (``torch.set_num_threads(2)``, ``numba.set_num_threads(2)``); the
calls alternate, and the medians of the repeats are compared (ratio = torch time / refnets
time, > 1 means refnets is faster). GFLOP/s counts 2 flops per multiply-add: forward, dx and dW
are each 2·N·C_out·H_out·W_out·(C_in/G)·kh·kw.

The machine's float64 GEMM rate is measured in the same run (numpy 2048² matmul, 2 threads) and
reported as a record; for the channel-heavy shapes (C_in/G ≥ 16) a "GEMM fraction" record has
ratio = achieved GFLOP/s / GEMM GFLOP/s. Each name ends with the strategy the dispatch chose
(:func:`refnets.kernels.choose_strategy`). GFLOP/s always count the direct convolution's
multiply-adds (the usual "effective" rate, for PyTorch too): the Winograd kernels of the 3×3
stride-1 shapes do 2.25× fewer multiplications in their GEMMs (the 1-D ones of the Conv1d 1.5×),
so their effective rate can pass the GEMM rate.
"""
from __future__ import annotations

import sys
from pathlib import Path

import refnets  # noqa: F401  (before numpy: it sets OpenBLAS's idle spin, see refnets/__init__.py)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternating_medians, cli, median_time, set_threads  # noqa: E402

# (name, x shape, W shape, stride, padding, groups)
SHAPES = [
    ("N64 C16->32 28x28 k3 pad1", (64, 16, 28, 28), (32, 16, 3, 3), 1, 1, 1),
    ("N32 C16->32 32x32 k3", (32, 16, 32, 32), (32, 16, 3, 3), 1, 0, 1),
    ("N128 C64->64 16x16 k3", (128, 64, 16, 16), (64, 64, 3, 3), 1, 0, 1),
    ("N256 G128 1->4 16x16 k3 (Kohler K_n)", (256, 128, 16, 16), (512, 1, 3, 3), 1, 0, 128),
    ("N16 C8->16 31x31 k3 s2", (16, 8, 31, 31), (16, 8, 3, 3), 2, 0, 1),
    # Du et al.'s conv ResNet layer: a Conv1d (q = 3, "same") as a 1-row Conv2d, padding (H, W)
    ("N64 C256->256 L64 q3 (Du Conv1d)", (64, 256, 1, 64), (256, 256, 1, 3), 1, (0, 1), 1),
]


def _flops(xs, ws, stride, padding, groups):
    N, C, H, W = xs
    Co, Cg, kh, kw = ws
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    Ho = (H + 2 * ph - kh) // stride + 1
    Wo = (W + 2 * pw - kw) // stride + 1
    return 3 * 2.0 * N * Co * Ho * Wo * Cg * kh * kw          # forward, dx, dW


def _channel_heavy(ws, groups):
    return ws[1] >= 16


def gemm_rate(dtype=np.float64, n=2048, repeats=5) -> tuple[float, float]:
    """(seconds, GFLOP/s) of an n×n numpy matmul (median of repeats)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    a @ b
    t = median_time(lambda: a @ b, repeats)
    return t, 2.0 * n ** 3 / t / 1e9


def run(quick=False) -> list[dict]:
    import torch

    from refnets.kernels import choose_strategy
    from refnets.layers.conv import conv2d_backward, conv2d_forward

    set_threads()
    repeats = 5 if quick else 7
    min_time = 0.05 if quick else 0.2
    records = []
    gemm_s, gemm_gf = gemm_rate(repeats=repeats)
    records.append({"name": "float64 GEMM rate: numpy 2048^2 matmul", "dtype": "float64",
                    "refnets_s": gemm_s, "torch_s": None, "ratio": None, "gflops": gemm_gf})
    s32, gf32 = gemm_rate(np.float32, repeats=repeats)   # the ceiling an im2col + GEMM float32 path can reach
    records.append({"name": "float32 GEMM rate: numpy 2048^2 matmul", "dtype": "float32",
                    "refnets_s": s32, "torch_s": None, "ratio": None, "gflops": gf32})
    fractions = []
    for dtype in (np.float64, np.float32):
        for name, xs, ws, stride, padding, groups in SHAPES:
            rng = np.random.default_rng(0)
            x = rng.standard_normal(xs).astype(dtype)
            W = (rng.standard_normal(ws) / np.sqrt(ws[1] * ws[2] * ws[3])).astype(dtype)
            b = rng.standard_normal(ws[0]).astype(dtype)
            out, _ = conv2d_forward(x, W, b, stride, padding, 1, groups)
            dout = rng.standard_normal(out.shape).astype(dtype)

            def f_ref():
                o, cache = conv2d_forward(x, W, b, stride, padding, 1, groups)
                return conv2d_backward(dout, cache)

            tx = torch.from_numpy(x).requires_grad_(True)
            tW = torch.from_numpy(W).requires_grad_(True)
            tb = torch.from_numpy(b).requires_grad_(True)
            td = torch.from_numpy(dout)

            def f_torch():
                o = torch.nn.functional.conv2d(tx, tW, tb, stride=stride, padding=padding, groups=groups)
                return torch.autograd.grad(o, (tx, tW, tb), td)

            # same numbers (a cheap sanity check, not a test)
            got = f_ref()
            want = [t.numpy() for t in f_torch()]
            tol = 1e-9 if dtype == np.float64 else 1e-3
            for g, w in zip(got, want):
                err = np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-30)
                if err > tol:
                    raise AssertionError(f"conv benchmark {name} {dtype.__name__}: refnets != torch ({err:.2e})")
            tr, tt, _, _ = alternating_medians(f_ref, f_torch, repeats, min_time)
            fl = _flops(xs, ws, stride, padding, groups)
            strategy = choose_strategy(ws[1], ws[0] // groups, ws[2:], (stride, stride), (1, 1), groups)
            name = f"{name} ({strategy})"
            rec = {"name": f"conv fwd+bwd {name}", "dtype": np.dtype(dtype).name, "refnets_s": tr, "torch_s": tt,
                   "ratio": tt / tr, "gflops": fl / tr / 1e9, "torch_gflops": fl / tt / 1e9}
            records.append(rec)
            if dtype == np.float64 and _channel_heavy(ws, groups):
                fractions.append({"name": f"conv GEMM fraction {name}", "dtype": "float64", "refnets_s": tr,
                                  "torch_s": None, "ratio": rec["gflops"] / gemm_gf, "gflops": rec["gflops"],
                                  "torch_ratio": rec["torch_gflops"] / gemm_gf})
    return records[:2] + fractions + records[2:]


def show(recs) -> str:
    """The table with GFLOP/s columns (refnets and torch)."""
    lines = [f"{'benchmark':<58} {'dtype':>7} {'refnets':>10} {'torch':>10} {'ratio':>6} {'GFLOP/s':>8} {'torch':>7}"]
    for r in recs:
        ts = f"{r['torch_s'] * 1e3:8.2f}ms" if r.get("torch_s") else f"{'-':>10}"
        ratio = f"{r['ratio']:6.2f}" if r.get("ratio") is not None else f"{'-':>6}"
        tg = f"{r['torch_gflops']:7.1f}" if r.get("torch_gflops") else f"{'-':>7}"
        lines.append(f"{r['name'][:58]:<58} {r['dtype']:>7} {r['refnets_s'] * 1e3:8.2f}ms {ts} {ratio} "
                     f"{r.get('gflops', 0):8.1f} {tg}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli(run, __doc__.splitlines()[0], show=show))
