"""The empirical neural tangent kernel of a scalar-output network, layer by layer.

G_ij = ⟨∂u_i/∂θ, ∂u_j/∂θ⟩ = Σ_h G⁽ʰ⁾_ij (Du et al. 2019, Sec. 4: u_i = f(θ, x_i)).

One forward and one backward with ``dout = 1`` per sample give every sample's sensitivities
∂u_i/∂(layer output) at once (samples never interact; the backward runs in
:func:`refnets.layers.base.sensitivities_only`, so no parameter gradient is formed), and each
layer turns its cached input and those sensitivities into its exact share (dense:
(ΔΔᵀ) ⊙ (XXᵀ); convolution: the per-sample or the trace form, whichever costs less). No per-sample
Jacobian of the whole network is ever formed.

``block=b`` trades time for memory: G is assembled from passes over pairs of sample blocks, so only
2b samples' activations are held at a time (the memory-bounded mode of performance issue #7).
"""
from __future__ import annotations

import numpy as np


def empirical_ntk(model, x, per_layer=False, params=None, block=None):
    """G(θ) on the inputs ``x``.

    Parameters
    ----------
    model : a Layer whose output is (N,) or (N, 1).
    x : (N, ...) inputs.
    per_layer : return the dict {parameter name: (N, N)} instead of the sum.
    params : optional list of parameter names (or fnmatch patterns) to include, e.g. only the
        trained ones.
    block : None (default: one forward and one backward over all N samples; the fastest, and it
        holds every sample's activations at once) or a number of samples b. Then G is built one
        b × b block at a time: a pass over the samples of block I for G[I, I], and a pass over the 2b
        samples of blocks I and J for G[I, J] (and its mirror G[J, I]). The same G to rounding; memory
        for the activations of 2b samples instead of N, for about N/b times the work. For networks
        whose N samples' activations do not fit in memory.

    Returns
    -------
    (N, N) symmetric PSD array, or the dict of shares.
    """
    from ._validate import positive_int

    n = x.shape[0]
    if block is None or positive_int("empirical_ntk", "block", block) >= n:
        shares = _shares(model, x, params)
    else:
        shares = _shares_by_blocks(model, x, params, int(block))
    if per_layer:
        return shares
    return sum(shares.values()) if shares else np.zeros((n, n))


def _shares(model, x, params):
    """{name: (N, N) share} from one forward and one backward over all of x."""
    from .layers.base import select, sensitivities_only

    out = model.forward(x)
    n = x.shape[0]
    if out.size != n:
        raise ValueError(f"empirical_ntk: the model must have one output per sample, got shape {out.shape}")
    with sensitivities_only():              # the shares need each layer's dout, never dW: no θ-sized arrays
        model.backward(np.ones_like(out))
    shares = model.gram()
    if params is not None:
        keep = set(select(shares, params))
        shares = {k: v for k, v in shares.items() if k in keep}
    return shares


def _shares_by_blocks(model, x, params, b):
    """:func:`_shares` assembled from passes over one block (diagonal) or two blocks (off-diagonal)."""
    n = x.shape[0]
    cuts = [(i0, min(n, i0 + b)) for i0 in range(0, n, b)]
    shares = {}
    for a, (i0, i1) in enumerate(cuts):
        for j0, j1 in cuts[a:]:
            if j0 == i0:
                part = _shares(model, x[i0:i1], params)
            else:
                part = _shares(model, np.concatenate([x[i0:i1], x[j0:j1]]), params)
            k = i1 - i0
            for name, g in part.items():
                G = shares.setdefault(name, np.zeros((n, n), dtype=g.dtype))
                if j0 == i0:                       # its upper triangle, mirrored: G exactly symmetric
                    G[i0:i1, i0:i1] = np.triu(g) + np.triu(g, 1).T
                else:
                    G[i0:i1, j0:j1] = g[:k, k:]
                    G[j0:j1, i0:i1] = g[:k, k:].T      # mirrored: G stays exactly symmetric
    return shares


def per_sample_gradients(model, x):
    """The explicit per-sample gradients ∂u_i/∂θ (N, P), one backward per sample.

    Slow and memory hungry by design: it is the independent check of :func:`empirical_ntk`.
    """
    rows = []
    for i in range(x.shape[0]):
        out = model.forward(x[i:i + 1])
        model.backward(np.ones_like(out))
        rows.append(np.concatenate([g.ravel() for g in model.gradients().values()]))
    return np.stack(rows)


def lambda_min(G):
    """Smallest eigenvalue of a symmetric matrix (Du et al. 2019's λ_min, λ₀)."""
    G = np.asarray(G)
    return float(np.linalg.eigvalsh(0.5 * (G + G.T))[0])
