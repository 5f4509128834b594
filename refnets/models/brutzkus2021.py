"""The networks and training algorithms of Brutzkus & Globerson (2021), "An Optimization and
Generalization Analysis for Max-Pooling Networks" (UAI 2021).

ConvPool (Eq. 1)::

    N(x) = Σ_{i=1}^k aᵢ max_j σ(wᵢ · x[j]),     σ = ReLU,

a non-overlapping convolution (kernel = stride = d, no bias) on x = (x[1], …, x[n]) ∈ ℝ^{nd}, ReLU,
max-pooling over the n positions and a linear layer. Parameters θ = (W, a): W ∈ ℝ^{k×d} (row i is the
filter wᵢ), a ∈ ℝᵏ; init (Sec. 5) wᵢ uniform on the sphere ‖w‖ = r, aᵢ uniform on {±1}, independent.

Built from refnets layers: ``Conv1d(1, k, d, stride=d) → GlobalMaxPool → ReLU → Dense(k, 1)``. The
max is taken *before* the ReLU: σ is nondecreasing, so max_j σ(u_j) = σ(max_j u_j) exactly, and the
gradients agree too (the winner is the first maximum of u; where max_j u_j ≤ 0 both gradients vanish).
Pooling first runs the ReLU on (N, k) instead of (N, k, n) values. The pooled features
z(x)ᵢ = max_j σ(wᵢ·x[j]) (Sec. 5, Part 3) are :meth:`ConvPool.features`.

Training: :func:`lw_cnn` is Algorithm 1 (LW_CNN) step for step; :func:`train_adam` the end-to-end Adam
training of the paper's experiments (Sec. 7). :func:`check_theorem_5_1` says which hyperparameter
condition of Theorem 5.1 fails. Baselines (Sec. 7): :func:`make_mlp` (one hidden layer, leaky ReLU,
width from :func:`mlp_width` so the parameter counts match) and :func:`hard_margin_svm`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import init as _init
from .._validate import check_dout, check_input, positive_int
from ..layers.activations import LeakyReLU, ReLU
from ..layers.base import Layer, as_rng, param_grads_enabled
from ..layers.containers import Sequential
from ..layers.conv import Conv1d
from ..layers.dense import Dense
from ..layers.pooling import GlobalMaxPool
from ..losses import LogisticLoss
from ..optim import GD, Adam
from ..train import train


# ----------------------------------------------------------------------------- ConvPool
class ConvPool(Layer):
    """ConvPool, N(x) = Σᵢ aᵢ max_j σ(wᵢ·x[j]) (Brutzkus & Globerson 2021, Eq. 1).

    Parameters
    ----------
    d : pattern (filter) dimension. k : number of channels (filters).
    r : init radius: every wᵢ⁽⁰⁾ uniform on the sphere ‖w‖ = r (Sec. 5). Default 1 (R: the
        experiments do not give r; Theorem 5.1 needs r ≤ η₁/200).
    rng : None (seed 0), int or Generator. dtype : float64 (default) or float32.

    Shapes: x (N, n·d) for any n ≥ 1 -> N(x) (N, 1). Parameters "W" (k, d) and "a" (k,), views into the
    inner layers (optimizers update them in place). Inner layout: x -> (N, 1, n·d) -> conv (N, k, n)
    -> max over positions (N, k) -> ReLU (N, k) = z(x) -> a·z (N, 1).
    """

    ndim = 2
    layout = "(N, n*d)"

    def __init__(self, d, k, r=1.0, rng=None, dtype=np.float64, name=None):
        super().__init__(name or "ConvPool", dtype)
        self.d = positive_int(self.name, "d", d)
        self.k = positive_int(self.name, "k", k)
        if not (np.isfinite(r) and r > 0):
            raise ValueError(f"{self.name}: the init radius r must be positive, got {r}")
        self.r = float(r)
        rng = as_rng(rng)
        self.conv = Conv1d(1, self.k, self.d, stride=self.d, bias=False, init=_init.sphere(self.r), rng=rng,
                           dtype=self.dtype, name="conv")
        self.pool = GlobalMaxPool(name="pool")
        self.relu = ReLU(name="relu")
        self.out = Dense(self.k, 1, init=_init.rademacher(), rng=rng, dtype=self.dtype, name="a")
        self.net = Sequential({"conv": self.conv, "pool": self.pool, "relu": self.relu, "a": self.out})
        # The paper's shapes, as views: W (k, d), a (k,).
        self.params = {"W": self.conv.params["W"].reshape(self.k, self.d), "a": self.out.params["W"].reshape(self.k)}
        assert np.shares_memory(self.params["W"], self.conv.params["W"])

    def check_input(self, x):
        check_input(self.name, x, 2, self.layout, self.dtype)
        if x.shape[1] % self.d or x.shape[1] == 0:
            raise ValueError(f"{self.name}: input length must be a positive multiple of d={self.d} (n patterns "
                             f"of dimension d), got shape {x.shape}")

    def _forward(self, x):
        return self.net.forward(x[:, None, :]), True

    def backward(self, dout):
        """Gradients of ⟨dout, N(x)⟩: "W" (k, d), "a" (k,); returns dx (N, n·d)."""
        self._need_forward()
        check_dout(self.name, dout, self._out_shape, self._out_dtype)
        dx = self.net.backward(dout)[:, 0, :]
        self.grads = ({"W": self.conv.grads["W"].reshape(self.k, self.d), "a": self.out.grads["W"].reshape(self.k)}
                      if param_grads_enabled() else {})              # none inside sensitivities_only()
        self._dout = dout
        return dx

    def gram(self):
        self._need_forward("gram")
        if self._dout is None:
            raise RuntimeError(f"{self.name}: gram called before backward; run backward(dout) first")
        return {"W": self.conv.gram()["W"], "a": self.out.gram()["W"]}

    def jvp(self, dx, dparams=None):
        self._need_forward("jvp")
        dparams = dparams or {}
        inner = {}
        if "W" in dparams:
            inner["conv.W"] = np.asarray(dparams["W"]).reshape(self.k, 1, self.d)
        if "a" in dparams:
            inner["a.W"] = np.asarray(dparams["a"]).reshape(1, self.k)
        return self.net.jvp(None if dx is None else dx[:, None, :], inner)

    # -------------------------------------------------------------- the paper's quantities
    def features(self, x) -> np.ndarray:
        """z(x)ᵢ = max_j σ(wᵢ·x[j]) (Sec. 5, Part 3): (N, n·d) -> (N, k)."""
        self.forward(x)
        return np.maximum(self.relu.cache[0], 0)

    def decision(self, x) -> np.ndarray:
        """N(x) as a vector: (N, n·d) -> (N,)."""
        return self.forward(x)[:, 0].copy()

    def predict(self, x) -> np.ndarray:
        """sign N(x) with sign(0) = −1 (the paper's footnote 2): (N,) of ±1."""
        return np.where(self.decision(x) > 0, 1.0, -1.0)

    def max_margin(self) -> float:
        """Distance of the last forward to a max tie (see :class:`GlobalMaxPool`)."""
        return self.pool.max_margin()

    def extra_repr(self):
        return f"d={self.d}, k={self.k}, r={self.r:g}"


def convpool_forward_reference(x, W, a):
    """Eq. 1 written directly (no layers), for checks: (N, n·d), (k, d), (k,) -> (N,)."""
    k, d = W.shape
    u = x.reshape(x.shape[0], -1, d) @ W.T           # (N, n, k): wᵢ·x[j]
    return np.maximum(u, 0).max(axis=1) @ a


def error_rate(model, x, y) -> float:
    """Fraction of samples with sign N(x) ≠ y (sign(0) = −1)."""
    pred = model.predict(x) if hasattr(model, "predict") else np.where(model.forward(x)[:, 0] > 0, 1.0, -1.0)
    return float(np.mean(pred != np.asarray(y)))


# ----------------------------------------------------------------------------- LW_CNN (Algorithm 1)
@dataclass
class LWResult:
    """What :func:`lw_cnn` returns: the two stages' traces (arrays by key), a⁽⁰⁾, the split sizes."""

    trace1: dict
    trace2: dict
    a0: np.ndarray
    m1: int
    m2: int
    W_T1: np.ndarray = field(repr=False, default=None)


def split_S(m: int) -> tuple[slice, slice]:
    """Algorithm 1's split: S₁ = the first ⌈m/2⌉ samples, S₂ the rest (Sec. 3)."""
    m1 = math.ceil(m / 2)
    return slice(0, m1), slice(m1, m)


def lw_cnn(model: ConvPool, x, y, T1: int, T2: int, eta1: float, eta2: float, callback1=None, callback2=None,
           record_every: int = 1):
    """LW_CNN, Algorithm 1 of Brutzkus & Globerson (2021), on ``model`` in place.

    for t = 1..T₁:  W⁽ᵗ⁾ ← W⁽ᵗ⁻¹⁾ − η₁ ∂ℒ₁/∂W (W⁽ᵗ⁻¹⁾, a⁽⁰⁾)      (a frozen at a⁽⁰⁾)
    for t = 1..T₂:  a⁽ᵗ⁾ ← a⁽ᵗ⁻¹⁾ − η₂ ∂ℒ₂/∂a (W⁽ᵀ¹⁾, a⁽ᵗ⁻¹⁾)      (W frozen at W⁽ᵀ¹⁾)

    with ℒᵢ = ℒ[Sᵢ] the mean logistic loss (Eq. 2) on S₁ = the first ⌈m/2⌉ samples and S₂ the rest.
    ``callback1/2(step, model, trace)`` are called at step 0 and every ``record_every`` steps (see
    :func:`refnets.train.train`), e.g. a :class:`refnets.theory.brutzkus2021.LemmaRecorder`.

    Shapes: x (m, n·d), y (m,) of ±1. Returns :class:`LWResult`.
    """
    y = np.asarray(y, dtype=np.float64)
    s1, s2 = split_S(x.shape[0])
    a0 = model.params["a"].copy()
    loss = LogisticLoss()
    tr1 = train(model, loss, x[s1], y[s1], GD(model, eta1, trainable=["W"]), T1, callback=callback1,
                record_every=record_every)
    W_T1 = model.params["W"].copy()
    tr2 = {}
    if s2.stop > s2.start and T2 > 0:
        # With W frozen at W⁽ᵀ¹⁾, ℒ₂ as a function of a is logistic regression on the pooled features z(x)
        # (Sec. 5, Part 3): the output layer alone, fed Z = z(S₂) computed once, has the same loss and the
        # same ∂ℒ₂/∂a at every step. Its weight array *is* the model's a (shared), so GD updates the model.
        Z = model.features(x[s2])
        head = Dense(model.k, 1, init=_init.zeros(), dtype=model.dtype, name="a")
        head.params["W"] = model.out.params["W"]
        cb2 = None if callback2 is None else (lambda step, _head, trace: callback2(step, model, trace))
        tr2 = train(head, loss, Z, y[s2], GD(head, eta2, trainable=["W"]), T2, callback=cb2,
                    record_every=record_every).arrays()
    return LWResult(tr1.arrays(), tr2, a0, s1.stop, s2.stop - s2.start, W_T1)


@dataclass
class ConditionCheck:
    """The verdict of :func:`check_theorem_5_1`: ``ok``, the failed conditions, every condition's line."""

    ok: bool
    failures: list
    lines: list

    def __str__(self):
        return "\n".join(self.lines)

    def raise_if_failed(self):
        if not self.ok:
            raise ValueError("Theorem 5.1's conditions fail: " + "; ".join(self.failures))


def check_theorem_5_1(k: int, d: int, eta1: float, eta2: float, r: float, T1: int) -> ConditionCheck:
    """Theorem 5.1's hyperparameter conditions, each checked and named when it fails:

    T₁ > 0,  η₁ ≤ 1/(4k(T₁+1)),  η₂ < 8k,  r ≤ η₁/200,  k > 8d³.
    """
    conds = [
        ("T1 > 0", T1 > 0, f"T1 = {T1}"),
        ("eta1 <= 1/(4k(T1+1))", eta1 > 0 and eta1 <= 1.0 / (4 * k * (T1 + 1)),
         f"eta1 = {eta1:.4g}, bound 1/(4k(T1+1)) = {1.0 / (4 * k * (T1 + 1)):.4g}"),
        ("eta2 < 8k", 0 < eta2 < 8 * k, f"eta2 = {eta2:.4g}, bound 8k = {8 * k}"),
        ("r <= eta1/200", 0 < r <= eta1 / 200, f"r = {r:.4g}, bound eta1/200 = {eta1 / 200:.4g}"),
        ("k > 8d^3", k > 8 * d ** 3, f"k = {k}, bound 8d^3 = {8 * d ** 3}"),
    ]
    lines = [f"{'ok  ' if ok else 'FAIL'} {name}: {detail}" for name, ok, detail in conds]
    failures = [f"{name} ({detail})" for name, ok, detail in conds if not ok]
    return ConditionCheck(not failures, failures, lines)


def theorem_5_1_hyperparameters(d: int, T1: int, k: int | None = None, eta2_fraction: float = 0.5) -> dict:
    """Hyperparameters that satisfy Theorem 5.1 with equality where allowed: k = 8d³ + 1 (unless given),
    η₁ = 1/(4k(T₁+1)), r = η₁/200, η₂ = ``eta2_fraction`` · 8k. Returns a dict (k, d, T1, eta1, eta2, r)."""
    k = 8 * d ** 3 + 1 if k is None else int(k)
    eta1 = 1.0 / (4 * k * (T1 + 1))
    return {"k": k, "d": d, "T1": T1, "eta1": eta1, "eta2": eta2_fraction * 8 * k, "r": eta1 / 200}


# ----------------------------------------------------------------------------- end-to-end Adam
def train_adam(model, x, y, lr=1e-2, max_epochs=200, batch_size=None, rng=None, stop_loss=None,
               eval_every=1):
    """End-to-end training with Adam on the mean logistic loss (Eq. 2), as in Sec. 7.

    Full batch when ``batch_size`` is None, otherwise epochs of shuffled minibatches (R: the paper gives
    neither batch size nor learning rate). Stops once the training error is 0 and (if given) the full
    training loss ≤ ``stop_loss``, checked every ``eval_every`` epochs, or after ``max_epochs``.

    Returns a dict: epochs, steps, train_loss, train_error.
    """
    rng = as_rng(rng)
    y = np.asarray(y, dtype=np.float64)
    loss = LogisticLoss()
    opt = Adam(model, lr)
    m = x.shape[0]
    bs = m if batch_size is None else min(int(batch_size), m)
    steps = 0
    value, err = np.inf, 1.0
    for epoch in range(1, max_epochs + 1):
        order = rng.permutation(m) if bs < m else np.arange(m)
        for start in range(0, m, bs):
            idx = order[start:start + bs]
            pred = model.forward(x[idx])
            loss.forward(pred, y[idx])
            model.backward(loss.backward())
            opt.step()
            steps += 1
        if epoch % eval_every == 0 or epoch == max_epochs:
            pred = model.forward(x)
            value = loss.forward(pred, y)
            err = float(np.mean(np.where(pred[:, 0] > 0, 1.0, -1.0) != y))
            if not np.isfinite(value):
                raise FloatingPointError(f"train_adam: the loss became {value} at epoch {epoch}; lower lr={lr}")
            if err == 0 and (stop_loss is None or value <= stop_loss):
                break
    return {"epochs": epoch, "steps": steps, "train_loss": float(value), "train_error": err}


# ----------------------------------------------------------------------------- baselines
def convpool_parameter_count(d: int, k: int) -> int:
    """k·d (filters) + k (output weights): ConvPool has no biases."""
    return k * d + k


def mlp_width(n_params: int, input_dim: int) -> int:
    """Hidden width h of the MLP baseline whose parameter count h·(input_dim + 1) (no biases, Eq. 8) is
    closest to ``n_params`` (Sec. 7: "a number of hidden neurons that results in the same number of
    parameters as ConvPool"). Exact equality needs input_dim + 1 to divide n_params; otherwise the
    counts differ by at most (input_dim + 1)/2. At least 1."""
    return max(1, int(round(n_params / (input_dim + 1))))


def make_mlp(input_dim: int, width: int | None = None, match: tuple | None = None, alpha: float = 0.01, rng=None,
             dtype=np.float64):
    """The MLP baseline N_FC(x) = Σᵢ aᵢ ψ(wᵢ·x), ψ(z) = max(αz, z) (Eq. 8), no biases.

    ``width`` directly, or ``match=(d, k)``: the width from :func:`mlp_width` so the parameter count
    equals ConvPool(d, k)'s. Init (R): wᵢ ~ N(0, I/input_dim), aᵢ ~ N(0, 1/width) (refnets' default).
    Parameters "W.W" (h, input_dim), "a.W" (1, h). Shapes: x (N, input_dim) -> (N, 1).
    """
    if width is None:
        if match is None:
            raise ValueError("make_mlp: give width or match=(d, k)")
        width = mlp_width(convpool_parameter_count(*match), input_dim)
    rng = as_rng(rng)
    return Sequential({"W": Dense(input_dim, width, rng=rng, dtype=dtype, name="W"),
                       "psi": LeakyReLU(alpha, name="psi"),
                       "a": Dense(width, 1, rng=rng, dtype=dtype, name="a")})


@dataclass
class SVMResult:
    """A fitted linear SVM: ``predict(x)``, whether the training set is linearly separable, the message."""

    w: np.ndarray
    b: float
    separable: bool
    train_error: float
    message: str

    def decision(self, x):
        return x @ self.w + self.b

    def predict(self, x):
        return np.where(self.decision(x) > 0, 1.0, -1.0)


def linearly_separable(x, y) -> bool:
    """Is there (w, b) with yᵢ(w·xᵢ + b) ≥ 1 for all i? An exact LP feasibility test (scipy, lazy)."""
    from scipy.optimize import linprog
    y = np.asarray(y, dtype=np.float64)
    m, D = x.shape
    A = -y[:, None] * np.hstack([x, np.ones((m, 1))])
    res = linprog(np.zeros(D + 1), A_ub=A, b_ub=-np.ones(m), bounds=[(None, None)] * (D + 1), method="highs")
    return res.status == 0


def hard_margin_svm(x, y, C: float = 1e3, C_max: float = 1e7, C_soft: float = 10.0,
                    max_iter: int = 200_000) -> SVMResult:
    """Hard-margin linear SVM on x (Sec. 7): min ‖w‖² s.t. yᵢ(w·xᵢ + b) ≥ 1, via scikit-learn's SVC (lazy import).

    Whether the training set is linearly separable is decided exactly by :func:`linearly_separable`.
    If it is, SVC with box constraint C gives the hard-margin solution as soon as no dual variable
    reaches C (then the box is inactive); C starts at ``C`` and grows ×10 up to ``C_max`` until that
    holds (a large C from the start makes libsvm slow). If it is not separable, the hard-margin problem
    has no solution: ``separable`` is False, ``message`` says so, and the classifier returned is the
    soft-margin one at ``C_soft`` (R: the paper does not say what its SVM returned there; a moderate C
    keeps libsvm fast, larger C gave higher training error within ``max_iter`` in our runs).
    """
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.svm import SVC
    except ImportError as e:  # pragma: no cover
        raise ImportError("hard_margin_svm needs scikit-learn (pip install 'refnets[baselines]')") from e
    import warnings
    y = np.asarray(y, dtype=np.float64)
    sep = linearly_separable(x, y)
    c = float(C) if sep else float(C_soft)
    while True:
        clf = SVC(kernel="linear", C=c, max_iter=max_iter, tol=1e-4)
        with warnings.catch_warnings():
            # A non-separable set with a huge C may stop at max_iter; the LP verdict is what counts.
            warnings.simplefilter("ignore", category=ConvergenceWarning)
            clf.fit(x, y)
        box_active = clf.dual_coef_.size and np.max(np.abs(clf.dual_coef_)) >= c * (1 - 1e-6)
        if not sep or not box_active or c >= C_max:
            break
        c *= 10
    w = clf.coef_.ravel().astype(np.float64)
    b = float(clf.intercept_[0])
    res = SVMResult(w, b, sep, 0.0, "")
    res.train_error = float(np.mean(res.predict(x) != y))
    if sep:
        res.message = (f"linearly separable; hard-margin SVM (C={c:g}, box {'active' if box_active else 'inactive'}), "
                       f"training error {res.train_error:.3g}")
    else:
        res.message = (f"NOT linearly separable (no (w, b) with y(w·x+b) >= 1: LP infeasible); the hard-margin "
                       f"SVM has no solution, the C={c:g} soft-margin SVM has training error {res.train_error:.3g}")
    return res


# ----------------------------------------------------------------------------- gradcheck
def gradcheck_factories() -> dict:
    """Small ConvPool and MLP configurations for ``python -m gradcheck``: ``{name: factory(rng) -> (model, x)}``.

    ConvPool inputs are Gaussian (no exact max ties); the pattern data of 𝒟 repeats patterns, so ties
    there are exact and handled by GlobalMaxPool's documented first winner."""
    def convpool(rng):
        rng = as_rng(rng)
        return ConvPool(4, 6, r=1.0, rng=rng), rng.standard_normal((3, 5 * 4))

    def mlp(rng):
        rng = as_rng(rng)
        return make_mlp(12, width=5, alpha=0.1, rng=rng), rng.standard_normal((4, 12))

    return {"brutzkus2021.convpool": convpool, "brutzkus2021.mlp": mlp}
