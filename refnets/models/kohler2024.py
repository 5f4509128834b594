"""The over-parametrized CNN image classifier of Kohler, Krzyżak & Walter (2024), "Analysis of the
rate of convergence of an over-parametrized convolutional neural network image classifier learned
by gradient descent" (arXiv 2405.07619), its training by regularised gradient descent, and the
fully connected network we compare it with.

The network (PAPERS.md §4; the convolution is (R): it follows the authors' earlier CNN papers)
--------------------------------------------------------------------------------------------
Image x ∈ [0,1]^{d₁×d₂} = o⁽⁰⁾ (one channel, k₀ = 1). Layer r = 1..L has k_r channels and
M_r×M_r filters anchored at their top-left tap, stride 1, output size = input size:

    o⁽ʳ⁾_{(i,j),s} = σ( Σ_{s'=1}^{k_{r−1}} Σ_{t₁,t₂=1}^{M_r, (i+t₁−1, j+t₂−1) ∈ D}
                         w⁽ʳ⁾_{t₁,t₂,s',s} o⁽ʳ⁻¹⁾_{(i+t₁−1, j+t₂−1),s'} + w⁽ʳ⁾_s ),          (conv)

i.e. a cross-correlation after zero padding M_r − 1 rows at the bottom and M_r − 1 columns at the
right only (``padding="bottom_right"``), σ(z) = 1/(1 + e^{−z}) the logistic squasher, one bias
w⁽ʳ⁾_s per channel. The last layer has k_L = 1 channel, which is pooled

    f_{w,k}(x) = (1/|I_κ|) Σ_{(i,j) ∈ I_κ} o⁽ᴸ⁾_{(i,j),1},   κ = 1 + Σ_r (M_r − 1),          (GAP)

over I_κ = {1..d₁−κ+1}×{1..d₂−κ+1} (R; ``region="all"`` averages over all of D instead). K_n such
networks, each with its own weights, are combined linearly:

    f_w(x) = Σ_{k=1}^{K_n} w_k⁽ᴸ⁺¹⁾ f_{w,k}(x).                                                (f_w)

Implementation: the K_n networks are **one** grouped convolution per layer. Layer 1 maps the one
input channel to K_n·k₁ channels (all networks read the same image, so no groups are needed);
layer r ≥ 2 maps K_n·k_{r−1} to K_n·k_r channels with ``groups=K_n``. Channel k·k_r + s of layer r
is channel s of network k. One kernel call per layer serves all K_n networks.

Parameter names (the paper's symbols)
-------------------------------------
* ``"w1"`` … ``"wL"``: the filters w⁽ʳ⁾_{t₁,t₂,s',s}, stored as (K_n·k_r, k_{r−1}, M_r, M_r)
  (PyTorch's grouped layout: row k·k_r + s holds w⁽ʳ⁾_{·,·,·,s} of network k; tap (t₁, t₂) is
  [t₁−1, t₂−1]);
* ``"w1_bias"`` … ``"wL_bias"``: the biases w⁽ʳ⁾_s, (K_n·k_r,);
* ``"w{L+1}"``: the output weights w_k⁽ᴸ⁺¹⁾, (K_n,) (for ``pool="none"``: (K_n, |I_κ|)).

Initialisation (R): w⁽ᴸ⁺¹⁾ = 0; every inner weight and bias iid uniform on [−A, A]. The paper lets
A grow with n; our default A = 4 makes σ's argument spread over its non-linear range for pixels in
[0, 1] and 3×3 filters (a parameter).

Training (PAPERS.md §4): t_n steps of gradient descent with constant step λ_n on

    F_n(w) = (1/n) Σᵢ (Yᵢ − f_w(Xᵢ))² + c_n Σ_k (w_k⁽ᴸ⁺¹⁾)²,                                   (F_n)

every weight trained, the L2 penalty on the output weights only; η̂_n = T_β f_{w(t_n)} with
T_β z = max(−β, min(β, z)), β = 1; the classifier is 1{η̂_n ≥ ½}. See :func:`fit`.
``fit(..., precondition="output")`` is our (R) option: the same F_n and the same GD step for the
inner weights, but the output weights take the exact step H⁻¹∇ of their convex quadratic problem
(H = (2/n)ΦᵀΦ + 2c_n I); plain GD is badly conditioned here (the pooled features share a large mean).

Variants (ours, for the experiments): ``pool="max"`` (global max over I_κ instead of the average),
``pool="none"`` (no pooling: a linear read-out with one output weight per network and position,
w⁽ᴸ⁺¹⁾ ∈ ℝ^{K_n×|I_κ|}), and :class:`FCNet`, a one-hidden-layer logistic network on the flattened
image of similar parameter count.
"""
from __future__ import annotations

import copy

import numpy as np

from .._validate import check_dout, check_input, positive_int
from ..kernels import conv2d_backward_kernel, conv2d_forward_kernel
from ..kernels.activation_numba import logistic_inplace, times_dlogistic_inplace
from ..kernels.pool_numba import region_mean_backward, region_mean_forward
from ..layers.base import Layer, as_rng
from ..layers.pooling import kohler_index_set

POOLS = ("avg", "max", "none")
REGIONS = ("I_kappa", "all")


def receptive_field(M) -> int:
    """κ = 1 + Σ_r (M_r − 1): the side of the subimage one output position of the CNN reads
    (Kohler et al. 2024, the κ of the average-pooling model and of the pooling set I_κ)."""
    return 1 + sum(int(m) - 1 for m in M)


def truncate(z, beta=1.0):
    """T_β z = max(−β, min(β, z)) (Kohler et al. 2024: η̂_n = T₁ f_w(t_n))."""
    return np.clip(z, -beta, beta)


def classify(eta_hat) -> np.ndarray:
    """The plug-in classifier 1{η̂ ≥ ½} as an int array."""
    return (np.asarray(eta_hat) >= 0.5).astype(np.int64)


def _sigmoid_inplace(z):
    """z <- σ(z) in place; returns z (the Numba kernel of :mod:`refnets.kernels.activation_numba`)."""
    return logistic_inplace(z)


def _times_dsigmoid(g, o):
    """g <- g · σ'(z) = g · o(1 − o) in place, with o = σ(z) cached by the forward; returns g."""
    return times_dlogistic_inplace(g, o)


class KohlerCNN(Layer):
    """K_n parallel CNNs with global pooling, combined linearly: f_w of the module docstring.

    Parameters
    ----------
    d1, d2 : image size (d2 defaults to d1).
    K_n : number of parallel CNNs.
    k : (k₁, …, k_L) channels per layer, k_L = 1 (the last channel is pooled).
    M : (M₁, …, M_L) filter sizes (an int means the same for every layer).
    A : inner weights and biases are initialised iid U[−A, A] (R; default 4).
    pool : "avg" (the paper), "max" (global max over the region) or "none" (linear read-out of
        every position of the region, one output weight per network and position).
    region : "I_kappa" (the paper, R) or "all" (every position of D).
    chunk : samples per forward/backward block (None: at most 16 MiB of the widest activation per
        block). The samples never interact, so blocking is exact; it bounds memory. Below glibc's
        32 MiB mmap ceiling, freed blocks are reused from the heap instead of being mapped and
        zero-filled afresh at every step (measured: ~20% of a GD step at the benchmark size).
    rng : None (seed 0), int or Generator. dtype : float64 (default) or float32.

    Shapes: x (N, 1, d₁, d₂) -> f_w(x) (N,). Parameters: w_r (K_n·k_r, k_{r−1}, M_r, M_r),
    w_r_bias (K_n·k_r,), w_{L+1} (K_n,) (pool "none": (K_n, |region|)).

    ``backward`` returns dx (N, 1, d₁, d₂) unless ``input_grad`` is False (training sets it: the
    images are data, and skipping dx saves one convolution of the widest layer).
    """

    ndim = 4
    layout = "(N, 1, d1, d2)"
    smooth = True

    def __init__(self, d1, d2=None, K_n=16, k=(4, 1), M=3, A=4.0, pool="avg", region="I_kappa",
                 chunk=None, rng=None, dtype=np.float64, name=None):
        super().__init__(name or "KohlerCNN", dtype)
        self.d1 = positive_int(self.name, "d1", d1)
        self.d2 = self.d1 if d2 is None else positive_int(self.name, "d2", d2)
        self.K_n = positive_int(self.name, "K_n", K_n)
        self.k = tuple(positive_int(self.name, "k", v) for v in np.atleast_1d(k))
        self.L = len(self.k)
        M = (M,) * self.L if np.isscalar(M) else tuple(M)
        if len(M) != self.L:
            raise ValueError(f"{self.name}: M has {len(M)} filter sizes for L = {self.L} layers")
        self.M = tuple(positive_int(self.name, "M", v) for v in M)
        if self.k[-1] != 1:
            raise ValueError(f"{self.name}: the last layer must have k_L = 1 channel (it is pooled), got k = {self.k}")
        if pool not in POOLS:
            raise ValueError(f"{self.name}: pool must be one of {POOLS}, got {pool!r}")
        if region not in REGIONS:
            raise ValueError(f"{self.name}: region must be one of {REGIONS}, got {region!r}")
        self.A = float(A)
        if not (np.isfinite(self.A) and self.A >= 0):
            raise ValueError(f"{self.name}: A must be a finite number >= 0, got {A}")
        self.pool, self.region = pool, region
        self.kappa = receptive_field(self.M)
        if self.kappa > min(self.d1, self.d2):
            raise ValueError(f"{self.name}: receptive field κ = {self.kappa} exceeds the image {self.d1}×{self.d2}")
        mask = (kohler_index_set(self.d1, self.d2, self.kappa) if region == "I_kappa"
                else np.ones((self.d1, self.d2), bool))
        self.positions = np.flatnonzero(mask.ravel())    # flat indices of the pooling set, row-major
        self.chunk = None if chunk is None else positive_int(self.name, "chunk", chunk)
        self.input_grad = True
        rng = as_rng(rng)
        K, dt = self.K_n, self.dtype
        k_prev = 1
        for r, (kr, Mr) in enumerate(zip(self.k, self.M), start=1):
            self.params[f"w{r}"] = rng.uniform(-self.A, self.A, (K * kr, k_prev, Mr, Mr)).astype(dt)
            self.params[f"w{r}_bias"] = rng.uniform(-self.A, self.A, K * kr).astype(dt)
            k_prev = kr
        out_shape = (K,) if pool != "none" else (K, self.positions.size)
        self.params[f"w{self.L + 1}"] = np.zeros(out_shape, dtype=dt)
        self.output = None

    # ------------------------------------------------------------------ names
    @property
    def output_name(self) -> str:
        """Name of the output weights w⁽ᴸ⁺¹⁾ (the penalised ones)."""
        return f"w{self.L + 1}"

    def inner_names(self) -> list:
        return [n for n in self.params if n != self.output_name]

    def extra_repr(self):
        return (f"d1={self.d1}, d2={self.d2}, K_n={self.K_n}, k={self.k}, M={self.M}, kappa={self.kappa}, "
                f"A={self.A:g}, pool={self.pool!r}, region={self.region!r}")

    # ------------------------------------------------------------------ checks
    def check_input(self, x):
        check_input(self.name, x, 4, self.layout, self.dtype)
        if x.shape[1:] != (1, self.d1, self.d2):
            raise ValueError(f"{self.name}: input must have shape (N, 1, {self.d1}, {self.d2}), got {x.shape}")

    def _chunk(self, N):
        if self.chunk is not None:
            return self.chunk
        widest = self.K_n * max(self.k) * self.d1 * self.d2 * np.dtype(self.dtype).itemsize
        return int(max(1, min(N, (16 << 20) // widest)))

    # ------------------------------------------------------------------ forward
    def features(self, x) -> np.ndarray:
        """The pooled outputs f_{w,k}(x) of the K_n networks, (N, K_n) (pool "none": (N, K_n, |region|))."""
        self.check_input(x)
        return np.concatenate([self._block_forward(x[s:s + self._chunk(x.shape[0])])[0]
                               for s in range(0, x.shape[0], self._chunk(x.shape[0]))])

    def _block_forward(self, x):
        """(pooled (n, K) or (n, K, P), cache) for one block of samples."""
        outs = [x]
        o = x
        for r in range(1, self.L + 1):
            W, b = self.params[f"w{r}"], self.params[f"w{r}_bias"]
            g = 1 if r == 1 else self.K_n
            z = conv2d_forward_kernel(o, W, b, (1, 1), (0, self.M[r - 1] - 1, 0, self.M[r - 1] - 1), (1, 1), g)
            o = _sigmoid_inplace(z)                    # (n, K·k_r, d1, d2); σ' = o(1 − o) later
            outs.append(o)
        n = x.shape[0]
        arg = None
        if self.pool == "avg":                         # one pass over the positions, no gathered copy
            return region_mean_forward(o.reshape(n * self.K_n, -1), self.positions).reshape(n, self.K_n), (outs, arg)
        flat = o.reshape(n, self.K_n, -1)[:, :, self.positions]     # (n, K, P), k_L = 1
        if self.pool == "max":
            arg = flat.argmax(axis=2)                  # first maximum wins ties (as PyTorch)
            pooled = np.take_along_axis(flat, arg[..., None], axis=2)[..., 0]
        else:
            pooled = flat
        return pooled, (outs, arg)

    def _forward(self, x):
        N = x.shape[0]
        c = self._chunk(N)
        wout = self.params[self.output_name]
        out = np.empty(N, dtype=x.dtype)
        caches = []
        for s in range(0, N, c):
            pooled, cache = self._block_forward(x[s:s + c])
            out[s:s + c] = (pooled.reshape(pooled.shape[0], -1) @ wout.ravel())
            caches.append((s, pooled, cache))
        self.output = out
        return out, caches

    # ------------------------------------------------------------------ backward
    def backward(self, dout):
        """Gradients of ⟨dout, f_w(x)⟩ for every parameter (overwrites ``grads``); dout (N,).

        Returns dx (N, 1, d₁, d₂), or None when ``input_grad`` is False."""
        self._need_forward()
        check_dout(self.name, dout, self._out_shape, self._out_dtype)
        dx, grads = self._backward(dout, self.cache)
        self.grads = grads
        self._dout = dout
        return dx

    def _backward(self, dout, caches):
        grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        wout = self.params[self.output_name]
        K = self.K_n
        dxs = []
        for s, pooled, (outs, arg) in caches:
            n = pooled.shape[0]
            do = dout[s:s + n]
            grads[self.output_name] += np.tensordot(do, pooled, axes=(0, 0))
            dpooled = do.reshape((n,) + (1,) * wout.ndim) * wout[None]   # (n, K) or (n, K, P)
            if self.pool == "avg":                     # dpooled / P on the positions, 0 elsewhere, one pass
                dflat = region_mean_backward(dpooled.ravel(), self.positions, self.d1 * self.d2)
            else:
                dflat = np.zeros((n, K, self.d1 * self.d2), dtype=dout.dtype)
                if self.pool == "max":
                    np.put_along_axis(dflat, self.positions[arg][..., None], dpooled[..., None], axis=2)
                else:
                    dflat[:, :, self.positions] = dpooled
            g = dflat.reshape(n, K, self.d1, self.d2)  # ∂/∂o⁽ᴸ⁾
            for r in range(self.L, 0, -1):
                o, o_prev = outs[r], outs[r - 1]
                g = _times_dsigmoid(np.ascontiguousarray(g), o)   # ∂/∂z⁽ʳ⁾ = ∂/∂o⁽ʳ⁾ · σ'(z), σ' = o(1 − o)
                need_dx = r > 1 or self.input_grad
                Mr = self.M[r - 1]
                dprev, dW, db = conv2d_backward_kernel(g, o_prev, self.params[f"w{r}"], (1, 1), (0, Mr - 1, 0, Mr - 1),
                                                       (1, 1), 1 if r == 1 else K, need_dx=need_dx, need_dw=True)
                grads[f"w{r}"] += dW
                grads[f"w{r}_bias"] += db
                g = dprev
            dxs.append(g)
        dx = np.concatenate(dxs) if self.input_grad else None
        return dx, grads

    # ------------------------------------------------------------------ helpers
    def eta_hat(self, x, beta=1.0) -> np.ndarray:
        """η̂ = T_β f_w(x), (N,) (forward without keeping caches beyond this call)."""
        return truncate(self.predict(x), beta)

    def predict(self, x) -> np.ndarray:
        """f_w(x), (N,), in blocks, leaving the model's cache alone."""
        self.check_input(x)
        c = self._chunk(x.shape[0])
        wout = self.params[self.output_name].ravel()
        return np.concatenate([self._block_forward(x[s:s + c])[0].reshape(min(c, x.shape[0] - s), -1) @ wout
                               for s in range(0, x.shape[0], c)])

    def copy(self) -> "KohlerCNN":
        return copy.deepcopy(self)


# ============================================================================ FC comparison
class FCNet(Layer):
    """One-hidden-layer logistic network on the flattened image (our comparison network):

        f_w(x) = Σ_{j=1}^{h} w_j⁽²⁾ σ(⟨w_j⁽¹⁾, vec x⟩ + w_j⁽¹⁾_bias),

    trained exactly like the CNN (F_n with the penalty c_n ‖w⁽²⁾‖², GD, T_β). Init (R, as the CNN):
    w⁽²⁾ = 0, biases U[−A, A], w⁽¹⁾ U[−A_in, A_in] with A_in = A·κ/√(d₁d₂) (default κ = 3): the
    pre-activation spread of a κ×κ filter with weights U[−A, A], kept as the fan-in grows from κ² to d₁d₂.
    Choose h with :func:`fc_width_for` to match a CNN's parameter count.

    Shapes: x (N, 1, d₁, d₂) -> (N,). Parameters "w1" (h, d₁d₂), "w1_bias" (h,), "w2" (h,).
    """

    ndim = 4
    layout = "(N, 1, d1, d2)"
    smooth = True

    def __init__(self, d1, d2=None, h=32, A=4.0, kappa=3, A_in=None, rng=None, dtype=np.float64, name=None):
        super().__init__(name or "FCNet", dtype)
        self.d1 = positive_int(self.name, "d1", d1)
        self.d2 = self.d1 if d2 is None else positive_int(self.name, "d2", d2)
        self.h = positive_int(self.name, "h", h)
        self.A = float(A)
        d = self.d1 * self.d2
        self.A_in = self.A * kappa / np.sqrt(d) if A_in is None else float(A_in)
        rng = as_rng(rng)
        self.params["w1"] = rng.uniform(-self.A_in, self.A_in, (self.h, d)).astype(self.dtype)
        self.params["w1_bias"] = rng.uniform(-self.A, self.A, self.h).astype(self.dtype)
        self.params["w2"] = np.zeros(self.h, dtype=self.dtype)
        self.input_grad = True
        self.output = None

    output_name = "w2"

    def inner_names(self):
        return ["w1", "w1_bias"]

    def check_input(self, x):
        check_input(self.name, x, 4, self.layout, self.dtype)
        if x.shape[1:] != (1, self.d1, self.d2):
            raise ValueError(f"{self.name}: input must have shape (N, 1, {self.d1}, {self.d2}), got {x.shape}")

    def _forward(self, x):
        v = x.reshape(x.shape[0], -1)
        o = _sigmoid_inplace(v @ self.params["w1"].T + self.params["w1_bias"])
        out = o @ self.params["w2"]
        self.output = out
        return out, (v, o)

    def _backward(self, dout, cache):
        v, o = cache
        g = dout[:, None] * self.params["w2"][None] * o * (1.0 - o)   # ∂/∂z, (N, h)
        grads = {"w1": g.T @ v, "w1_bias": g.sum(0), "w2": o.T @ dout}
        dx = (g @ self.params["w1"]).reshape(dout.shape[0], 1, self.d1, self.d2) if self.input_grad else None
        return dx, grads

    def predict(self, x):
        self.check_input(x)
        v = x.reshape(x.shape[0], -1)
        return _sigmoid_inplace(v @ self.params["w1"].T + self.params["w1_bias"]) @ self.params["w2"]

    def eta_hat(self, x, beta=1.0):
        return truncate(self.predict(x), beta)

    def extra_repr(self):
        return f"d1={self.d1}, d2={self.d2}, h={self.h}, A={self.A:g}, A_in={self.A_in:.3g}"


def fc_width_for(n_params: int, d1: int, d2: int | None = None) -> int:
    """The hidden width h ≥ 1 whose :class:`FCNet` has the parameter count closest to ``n_params``
    (h·(d₁d₂ + 2) parameters)."""
    d = d1 * (d1 if d2 is None else d2)
    return max(1, int(round(n_params / (d + 2))))


# ============================================================================ training
def fit(model, x, y, lambda_n, t_n, c_n, record_every=None, callback=None, step_bound=None, precondition="none"):
    """t_n steps of GD with constant step λ_n on F_n(w) = (1/n)Σ(Yᵢ − f_w(Xᵢ))² + c_n‖w⁽ᴸ⁺¹⁾‖²
    (Kohler et al. 2024), every parameter trained; returns the :class:`refnets.train.Trace` as arrays.

    Parameters
    ----------
    model : :class:`KohlerCNN` or :class:`FCNet` (updated in place).
    x : (n, 1, d₁, d₂) images; y : (n,) labels in {0, 1}.
    lambda_n : the constant step λ_n; t_n : the number of steps; c_n : the penalty weight.
    record_every, callback : as :func:`refnets.train.train` (callback(step, model, trace)).
    precondition : "none" (the paper: plain GD, one step λ_n for every weight) or "output" (R, ours):
        the inner weights take the paper's step λ_n, the output weights the step H⁻¹∇ with
        H = (2/n)ΦᵀΦ + 2c_n I the Hessian of F_n in w⁽ᴸ⁺¹⁾ at the current inner weights (Φ the pooled
        features). F_n is a convex quadratic in w⁽ᴸ⁺¹⁾, so this step lands on its exact minimiser
        (the ridge fit on the current features) — the point plain GD creeps towards in about
        λ_max(H)/(2c_n) steps (measured: ΦᵀΦ/n has eigenvalues from ~1e-7 to ~4 for K_n = 16, so
        with c_n = 1e-4 plain GD needs ~10⁴ steps; the paper's own analysis lets t_n grow with n
        while the inner weights barely move). Costs one K_n×K_n solve per step.

    The trace's "loss" is F_n(w(t)) at t = 0..t_n (before each update).
    """
    if precondition == "output":
        return _fit_output_preconditioned(model, x, np.asarray(y, dtype=x.dtype), float(lambda_n), int(t_n),
                                          float(c_n), callback, record_every or max(1, int(t_n)))
    if precondition != "none":
        raise ValueError(f"fit: precondition must be 'none' or 'output', got {precondition!r}")
    from ..losses import L2Penalty, MeanSquared
    from ..optim import GD
    from ..train import train

    old = model.input_grad
    model.input_grad = False                      # dx of the data is never needed
    try:
        penalty = L2Penalty(model.output_name, c_n) if c_n > 0 else None
        tr = train(model, MeanSquared(), x, np.asarray(y, dtype=x.dtype), GD(model, lambda_n), int(t_n),
                   penalty=penalty, record_every=record_every or max(1, int(t_n)), callback=callback,
                   step_bound=step_bound)
    finally:
        model.input_grad = old
    return tr.arrays()


def _cached_features(model):
    """Φ (n, K_n) (pool "none": (n, K_n·|I_κ|); FCNet: (n, h)) from the cache of the last forward."""
    if isinstance(model, KohlerCNN):
        return np.concatenate([p.reshape(p.shape[0], -1) for _, p, _ in model.cache])
    return model.cache[1]


def _fit_output_preconditioned(model, x, y, lambda_n, t_n, c_n, callback, record_every):
    """GD with the output-weight step H⁻¹∇ (see :func:`fit`, precondition="output"); returns the
    trace as arrays {"step", "loss", "final_loss"} like :func:`fit`."""
    from ..train import TrainingDiverged
    n = x.shape[0]
    name = model.output_name
    old = model.input_grad
    model.input_grad = False
    losses = []
    try:
        for t in range(t_n + 1):
            f = model.forward(x)
            r = f - y
            wout = model.params[name]
            F = float(r @ r) / n + c_n * float(np.sum(wout * wout))
            losses.append(F)
            if not np.isfinite(F):
                raise TrainingDiverged(f"fit (precondition='output'): F_n is not finite at step {t}; lower λ_n")
            if callback is not None and (t % record_every == 0 or t == t_n):
                callback(t, model, None)
            if t == t_n:
                break
            model.backward((2.0 / n) * r)
            phi = _cached_features(model)
            H = (2.0 / n) * (phi.T @ phi) + 2.0 * c_n * np.eye(phi.shape[1], dtype=phi.dtype)
            g_out = model.grads[name].ravel() + 2.0 * c_n * wout.ravel()
            # c_n > 0 makes H positive definite; with c_n = 0 fall back to the least-squares step
            step = np.linalg.solve(H, g_out) if c_n > 0 else np.linalg.lstsq(H, g_out, rcond=None)[0]
            for pname, g in model.grads.items():
                if pname != name:
                    model.params[pname] -= lambda_n * g
            wout -= step.reshape(wout.shape)
    finally:
        model.input_grad = old
    loss = np.array(losses)
    return {"step": np.arange(loss.size), "loss": loss, "final_loss": float(loss[-1])}


def gd_step(model, x, y, lambda_n, c_n) -> float:
    """One step w ← w − λ_n ∇F_n(w) on every parameter, in place; returns F_n(w) before the step.

    ∇F_n = (2/n) Σᵢ (f_w(Xᵢ) − Yᵢ) ∇f_w(Xᵢ) + 2c_n w⁽ᴸ⁺¹⁾ (the penalty reaches the output weights only).
    The same update as :func:`fit` (which adds the trace and divergence checks of
    :func:`refnets.train.train`); x (n, 1, d₁, d₂), y (n,)."""
    old = model.input_grad
    model.input_grad = False
    try:
        f = model.forward(x)
        r = f - y
        n = x.shape[0]
        model.backward((2.0 / n) * r)
    finally:
        model.input_grad = old
    wout = model.params[model.output_name]
    value = float(r @ r) / n + c_n * float(np.sum(wout * wout))
    for name, g in model.grads.items():
        if name == model.output_name:
            g = g + 2.0 * c_n * wout
        model.params[name] -= lambda_n * g
    return value


def output_step_size(model, x, c_n, factor=1.0, max_step=1.0) -> float:
    """λ_n = min(factor / λ_max(H), max_step) with H = (2/n) ΦᵀΦ + 2c_n I the Hessian of F_n in the
    output weights at the current inner weights (Φ (n, K_n) the pooled features).

    (R) The paper fixes λ_n only up to constants. 1/λ_max(H) is the largest stable step of the convex
    output-layer problem, and with w⁽ᴸ⁺¹⁾(0) = 0 the inner weights start still, so it governs the first
    steps. When the features nearly vanish (saturated logistic units), λ_max(H) is tiny and that step
    would throw the inner weights far once w⁽ᴸ⁺¹⁾ ≠ 0: ``max_step`` caps it (measured: a K_n = 2 run
    with λ_n ≈ 4.5·10³ diverged).
    """
    phi = model.features(x) if isinstance(model, KohlerCNN) else _fc_features(model, x)
    phi = phi.reshape(phi.shape[0], -1)
    lam = 2.0 / phi.shape[0] * np.linalg.eigvalsh(phi.T @ phi)[-1] + 2.0 * c_n
    return float(min(factor / lam, max_step))


def _fc_features(model, x):
    v = x.reshape(x.shape[0], -1)
    return _sigmoid_inplace(v @ model.params["w1"].T + model.params["w1_bias"])


# ============================================================================ gradcheck
def gradcheck_factories() -> dict:
    """Small configurations for ``python -m gradcheck``: ``{name: factory(rng) -> (model, x)}``.

    The output weights are drawn at random (at the paper's init they are 0, and every inner gradient
    would vanish, which checks nothing)."""

    def _randomise(model, rng):
        w = model.params[model.output_name]
        w[...] = rng.standard_normal(w.shape)
        return model

    def _x(rng, n, d1, d2):
        return rng.uniform(0, 1, (n, 1, d1, d2))

    def avg(rng):
        rng = as_rng(rng)
        m = KohlerCNN(6, 5, K_n=3, k=(2, 1), M=(3, 2), A=1.5, rng=rng)
        return _randomise(m, rng), _x(rng, 3, 6, 5)

    def avg_all(rng):
        rng = as_rng(rng)
        m = KohlerCNN(5, 5, K_n=2, k=(3, 2, 1), M=(2, 2, 1), A=1.5, region="all", rng=rng)
        return _randomise(m, rng), _x(rng, 2, 5, 5)

    def none(rng):
        rng = as_rng(rng)
        m = KohlerCNN(5, 4, K_n=2, k=(2, 1), M=2, A=1.5, pool="none", rng=rng)
        return _randomise(m, rng), _x(rng, 3, 5, 4)

    def fc(rng):
        rng = as_rng(rng)
        m = FCNet(4, 3, h=5, rng=rng)
        return _randomise(m, rng), _x(rng, 3, 4, 3)

    return {"kohler2024.cnn_avg": avg, "kohler2024.cnn_avg_all": avg_all, "kohler2024.cnn_readout": none,
            "kohler2024.fc": fc}
