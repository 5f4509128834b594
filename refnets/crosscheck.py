"""Cross-check kit: compare a refnets model with your own PyTorch module, tensor by tensor.

    import torch.nn as nn
    from refnets import Sequential, Conv2d, ReLU, Flatten, Dense
    from refnets.crosscheck import load_into_torch, crosscheck

    model = Sequential(Conv2d(3, 8, 3, padding=1, rng=0), ReLU(), Flatten(), Dense(8 * 6 * 6, 10, bias=True))
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).double()
    load_into_torch(model, net)                 # refnets parameters -> net's state_dict
    report = crosscheck(model, net, x)          # outputs, every gradient, per-layer Gram matrices
    print(report)                               # worst relative errors first
    report.assert_close(1e-10)

Parameter names and layouts
---------------------------
refnets and PyTorch store every tensor in the same layout (NCHW images, (N, C, L) sequences):

* Dense ``W`` (out, in), ``b`` (out,)  <->  nn.Linear ``weight``, ``bias``;
* Conv2d ``W`` (C_out, C_in/groups, kh, kw), ``b`` (C_out,)  <->  nn.Conv2d ``weight``, ``bias``;
* Conv1d ``W`` (C_out, C_in/groups, k), ``b`` (C_out,)  <->  nn.Conv1d ``weight``, ``bias``;
* containers by dotted names: Sequential "0.W" <-> nn.Sequential "0.weight"; Residual "branch.0.W"
  <-> a module whose attribute ``branch`` is an nn.Sequential, "branch.0.weight"; Parallel "w".

The default name map (``names="auto"``) turns a final ``W`` into ``weight`` and ``b`` into ``bias``
and keeps the dotted prefix, so any network built from refnets containers matches the same network
built from ``nn.Sequential`` and attributes of the same names; a name that the module holds verbatim
("A", "W1") matches itself. Paper models whose flat names ("A", "W1", …, "B") differ from yours
match with ``names="order"`` (both in registration order, shapes checked) or an explicit
``names={"A": "embed.weight", …}``. A Dense layer's fixed multiplier ``scale`` and a Conv's ``scale``
are not parameters: your module must apply them.

Comparisons report relative errors max|a − b| / max(|a| + |b|) per tensor ("forward", "dx",
"grad:0.W", "gram:0.W"): forward outputs, the gradient of ⟨dout, f(x)⟩ for the input and for every
parameter, and each parameter's (N, N) share of the empirical NTK, G_ij = ⟨∂u_i/∂θ, ∂u_j/∂θ⟩ with
u_i = ⟨dout_i, f(x)_i⟩. Compare in float64 (``module.double()``): float32 agrees to ~1e-6 only.

PyTorch is imported only inside these functions: ``import refnets`` never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_TO_TORCH = {"W": "weight", "b": "bias"}
_FROM_TORCH = {v: k for k, v in _TO_TORCH.items()}


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("the cross-check kit needs PyTorch: pip install 'refnets[crosscheck]'") from None
    return torch


def torch_name(name: str) -> str:
    """The PyTorch name of a refnets parameter name: "0.W" -> "0.weight", "branch.1.b" -> "branch.1.bias",
    anything else unchanged ("A", "W1", "0.w")."""
    prefix, _, last = name.rpartition(".")
    last = _TO_TORCH.get(last, last)
    return f"{prefix}.{last}" if prefix else last


def refnets_name(name: str) -> str:
    """The refnets name of a PyTorch parameter name: "0.weight" -> "0.W", "fc.bias" -> "fc.b"."""
    prefix, _, last = name.rpartition(".")
    last = _FROM_TORCH.get(last, last)
    return f"{prefix}.{last}" if prefix else last


def _shape(t) -> tuple:
    return tuple(t.shape)


def match_names(model, module, names="auto") -> dict[str, str]:
    """Map every refnets parameter of ``model`` to a tensor name of ``module.state_dict()``.

    ``names``: "auto" (the default map, :func:`torch_name`, or the name verbatim), "order" (parameters
    in registration order, ``module.named_parameters()``), or a dict refnets name -> torch name (names
    it leaves out use "auto"). Shapes must agree. Raises ValueError listing what did not match.
    """
    own = model.parameters()
    sd = module.state_dict()
    if isinstance(names, str) and names == "order":
        theirs = [n for n, _ in module.named_parameters()]
        if len(theirs) != len(own):
            raise ValueError(f"names='order': the refnets model has {len(own)} parameters "
                             f"{[(k, a.shape) for k, a in own.items()]}, the torch module {len(theirs)} "
                             f"{[(n, _shape(sd[n])) for n in theirs]}")
        mapping = dict(zip(own, theirs))
    elif isinstance(names, dict) or names == "auto":
        explicit = dict(names) if isinstance(names, dict) else {}
        unknown = [k for k in explicit if k not in own]
        if unknown:
            raise ValueError(f"names: {unknown} are not parameters of the refnets model; it has {list(own)}")
        mapping = {}
        for k in own:
            if k in explicit:
                mapping[k] = explicit[k]
            elif torch_name(k) in sd:
                mapping[k] = torch_name(k)
            elif k in sd:
                mapping[k] = k
        missing = [k for k in own if k not in mapping]
        if missing:
            left = [n for n, _ in module.named_parameters() if n not in mapping.values()]
            raise ValueError(
                f"no torch tensor for the refnets parameters {[(k, own[k].shape) for k in missing]}; "
                f"unmatched in the torch module: {[(n, _shape(sd[n])) for n in left]}. "
                f"Pass names='order' or names={{refnets_name: torch_name}}")
    else:
        raise ValueError(f"names must be 'auto', 'order' or a dict, got {names!r}")
    for k, t in mapping.items():
        if t not in sd:
            raise ValueError(f"parameter {k!r}: the torch module has no tensor {t!r}; it has {list(sd)}")
        if _shape(sd[t]) != own[k].shape:
            raise ValueError(f"parameter {k!r} -> {t!r}: refnets shape {own[k].shape}, torch shape {_shape(sd[t])}")
    return mapping


def to_state_dict(model, module=None, names="auto") -> dict:
    """refnets parameters as a PyTorch state_dict (name -> tensor, copies).

    Without ``module`` the names follow :func:`torch_name` and tensors keep the refnets dtype; with
    ``module`` they follow :func:`match_names` and take the module's dtypes, ready for
    ``module.load_state_dict(sd, strict=False)``.
    """
    torch = _torch()
    own = model.parameters()
    if module is None:
        return {torch_name(k): torch.from_numpy(np.array(a, copy=True)) for k, a in own.items()}
    sd = module.state_dict()
    return {t: torch.from_numpy(np.array(own[k], copy=True)).to(sd[t].dtype)
            for k, t in match_names(model, module, names).items()}


def from_state_dict(state_dict, model=None, names="auto", module=None) -> dict[str, np.ndarray]:
    """A PyTorch state_dict as refnets parameters (name -> NumPy array, copies).

    Without ``model``: every tensor, renamed by :func:`refnets_name`. With ``model`` (and, for
    ``names="order"``, the ``module`` the state_dict came from): the model's names, in the model's
    dtypes, shapes checked — ready for ``model.set_parameters``.
    """
    arrays = {k: v.detach().cpu().numpy().copy() for k, v in state_dict.items()}
    if model is None:
        return {refnets_name(k): a for k, a in arrays.items()}
    if module is None:
        if names == "order":
            raise ValueError("names='order' needs the module, for its parameter order")

        class _SD:  # just enough of a module for match_names
            def state_dict(self):
                return state_dict

            def named_parameters(self):
                return list(state_dict.items())
        module = _SD()
    own = model.parameters()
    return {k: arrays[t].astype(own[k].dtype) for k, t in match_names(model, module, names).items()}


def load_into_torch(model, module, names="auto") -> dict[str, str]:
    """Copy the refnets model's parameters into the torch ``module`` in place; returns the name map used."""
    torch = _torch()
    mapping = match_names(model, module, names)
    sd = module.state_dict()
    own = model.parameters()
    with torch.no_grad():
        for k, t in mapping.items():
            sd[t].copy_(torch.from_numpy(np.array(own[k], copy=True)).to(sd[t].dtype))
    return mapping


def load_from_torch(module, model, names="auto") -> dict[str, str]:
    """Copy the torch ``module``'s parameters into the refnets model in place; returns the name map used."""
    mapping = match_names(model, module, names)
    sd = module.state_dict()
    own = model.parameters()
    model.set_parameters({k: sd[t].detach().cpu().numpy().astype(own[k].dtype) for k, t in mapping.items()})
    return mapping


# ------------------------------------------------------------------ comparisons
def relative_error(a, b) -> float:
    """max|a − b| / max(|a| + |b|) over the whole tensor (0 when both are zero; inf on a shape mismatch)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return 0.0 if np.array_equal(a, b, equal_nan=True) else float("inf")
    denom = float(np.max(np.abs(a) + np.abs(b)))
    return 0.0 if denom == 0.0 else float(np.max(np.abs(a - b)) / denom)


@dataclass
class CrossCheckReport:
    """Relative errors by quantity ("forward", "dx", "grad:<name>", "gram:<name>"), plus notes."""

    errors: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    names: dict = field(default_factory=dict)

    def worst(self) -> tuple[str, float]:
        """The quantity with the largest relative error, and that error."""
        if not self.errors:
            return "", 0.0
        k = max(self.errors, key=lambda n: self.errors[n])
        return k, self.errors[k]

    def ok(self, tol: float = 1e-10) -> bool:
        """Every relative error ≤ ``tol``."""
        return all(e <= tol for e in self.errors.values())

    def assert_close(self, tol: float = 1e-10) -> None:
        """Raise AssertionError, with the table, unless :meth:`ok`."""
        if not self.ok(tol):
            name, err = self.worst()
            raise AssertionError(f"refnets and torch disagree: worst {name} relative error {err:.3e} > {tol:g}\n{self}")

    def __str__(self) -> str:
        rows = sorted(self.errors.items(), key=lambda kv: -kv[1])
        w = max([len(k) for k in self.errors] + [8])
        lines = [f"{'quantity':<{w}}  relative error"] + [f"{k:<{w}}  {e:.3e}" for k, e in rows]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _torch_input(module, x):
    torch = _torch()
    dtype = next((p.dtype for p in module.parameters()), torch.float64)
    return torch.from_numpy(np.array(x, copy=True)).to(dtype)


def compare_forward(model, module, x) -> float:
    """Relative error between ``model.forward(x)`` and ``module(x)`` (same parameters assumed)."""
    torch = _torch()
    with torch.no_grad():
        out_t = module(_torch_input(module, x))
    return relative_error(model.forward(x), out_t.numpy())


def _dout_for(out, dout, seed):
    if dout is None:
        dout = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    return np.asarray(dout, dtype=out.dtype)


def compare_gradients(model, module, x, dout=None, names="auto", seed=0) -> dict[str, float]:
    """Relative errors of the gradients of ⟨dout, f(x)⟩ (``dout`` default: seeded standard normal):
    "dx" for the input and "grad:<refnets name>" for every parameter."""
    torch = _torch()
    mapping = match_names(model, module, names)
    out = model.forward(x)
    dout = _dout_for(out, dout, seed)
    dx = model.backward(dout)
    grads = model.gradients()
    xt = _torch_input(module, x).requires_grad_(True)
    module.zero_grad(set_to_none=True)
    out_t = module(xt)
    (out_t * torch.from_numpy(dout).to(out_t.dtype)).sum().backward()
    tparams = dict(module.named_parameters())
    errors = {"dx": relative_error(dx, xt.grad.numpy())}
    for k, t in mapping.items():
        g = tparams[t].grad if t in tparams else None
        errors[f"grad:{k}"] = relative_error(grads[k], np.zeros(grads[k].shape) if g is None else g.numpy())
    return errors


def torch_gram(module, x, dout, param_names) -> dict[str, np.ndarray]:
    """Per-parameter empirical NTK shares of a torch module, G_ij = ⟨∂u_i/∂θ, ∂u_j/∂θ⟩ with
    u_i = ⟨dout_i, module(x)_i⟩, one backward per sample (samples must not interact, as in refnets)."""
    torch = _torch()
    tparams = dict(module.named_parameters())
    ps = [tparams[n] for n in param_names]
    xt = _torch_input(module, x)
    out_t = module(xt)
    d = torch.from_numpy(np.asarray(dout)).to(out_t.dtype)
    rows = {n: [] for n in param_names}
    for i in range(out_t.shape[0]):
        gs = torch.autograd.grad((out_t[i] * d[i]).sum(), ps, retain_graph=True, allow_unused=True)
        for n, g, p in zip(param_names, gs, ps):
            rows[n].append(torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1))
    return {n: (torch.stack(r) @ torch.stack(r).T).detach().numpy() for n, r in rows.items()}


def compare_gram(model, module, x, dout=None, names="auto", seed=0) -> dict[str, float]:
    """Relative errors of every parameter's (N, N) NTK share: refnets ``model.gram()`` after
    ``backward(dout)`` against :func:`torch_gram`, as "gram:<refnets name>"."""
    mapping = match_names(model, module, names)
    out = model.forward(x)
    dout = _dout_for(out, dout, seed)
    model.backward(dout)
    ours = model.gram()
    theirs = torch_gram(module, x, dout, [mapping[k] for k in ours])
    return {f"gram:{k}": relative_error(g, theirs[mapping[k]]) for k, g in ours.items()}


def crosscheck(model, module, x, dout=None, names="auto", gram=True, seed=0) -> CrossCheckReport:
    """Compare forward outputs, all gradients and (``gram=True``) the per-parameter Gram matrices of a
    refnets model and a torch module holding the same parameters (see :func:`load_into_torch`).

    Returns a :class:`CrossCheckReport`; ``print`` it for the table (worst first) and call
    ``assert_close(tol)`` in tests. A model without Gram support gets a note instead of gram rows.
    """
    report = CrossCheckReport(names=match_names(model, module, names))
    report.errors["forward"] = compare_forward(model, module, x)
    report.errors.update(compare_gradients(model, module, x, dout, names, seed))
    if gram:
        try:
            report.errors.update(compare_gram(model, module, x, dout, names, seed))
        except NotImplementedError as e:
            report.notes.append(f"Gram matrices not compared: {e}")
    return report


__all__ = ["torch_name", "refnets_name", "match_names", "to_state_dict", "from_state_dict", "load_into_torch",
           "load_from_torch", "relative_error", "CrossCheckReport", "compare_forward", "compare_gradients",
           "torch_gram", "compare_gram", "crosscheck"]
