"""The empirical neural tangent kernel of a scalar-output network, layer by layer.

G_ij = ⟨∂u_i/∂θ, ∂u_j/∂θ⟩ = Σ_h G⁽ʰ⁾_ij (Du et al. 2019, Sec. 4: u_i = f(θ, x_i)).

One forward and one backward with ``dout = 1`` per sample give every sample's sensitivities
∂u_i/∂(layer output) at once (samples never interact; the backward runs in
:func:`refnets.layers.base.sensitivities_only`, so no parameter gradient is formed), and each
layer turns its cached input and those sensitivities into its exact share (dense:
(ΔΔᵀ) ⊙ (XXᵀ); convolution: the trace form). No per-sample Jacobian of the whole network is ever
formed.
"""
from __future__ import annotations

import numpy as np


def empirical_ntk(model, x, per_layer=False, params=None):
    """G(θ) on the inputs ``x``.

    Parameters
    ----------
    model : a Layer whose output is (N,) or (N, 1).
    x : (N, ...) inputs.
    per_layer : return the dict {parameter name: (N, N)} instead of the sum.
    params : optional list of parameter names (or fnmatch patterns) to include, e.g. only the
        trained ones.

    Returns
    -------
    (N, N) symmetric PSD array, or the dict of shares.
    """
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
    if per_layer:
        return shares
    return sum(shares.values()) if shares else np.zeros((n, n))


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
