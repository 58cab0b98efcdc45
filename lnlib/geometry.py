r"""The geometry of the LayerNorm backward, measured inside a small network trained with lnlib.

The backward {eq}`eq-dx` is :math:`dx = \mathrm{rstd}\,P g` with :math:`g = \gamma\odot dy` and
:math:`P = I - \mathbf 1\mathbf 1^T/D - \hat x\hat x^T/D`: it removes from :math:`g` its component along
the all-ones direction (the *mean* part) and along :math:`\hat x` (the *radial* part), and scales the
rest. This module splits real gradients into those parts, compares the true backward with three cheaper
surrogates, and trains a NumPy MLP whose LayerNorms are :func:`lnlib.layer_norm_forward` /
:func:`lnlib.layer_norm_backward` to get real gradients, on data it generates itself.

The network's matrices are small (64 x 64): OpenBLAS runs them faster on one thread than on several,
so set ``OPENBLAS_NUM_THREADS=1`` before NumPy is imported when timing matters.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .layernorm import layer_norm_backward, layer_norm_forward

__all__ = ["Energies", "energy_fractions", "random_fraction", "surrogate_dx", "cosine", "train_mlp", "SURROGATES"]


class Energies(NamedTuple):
    """Fractions of :math:`\\|g\\|^2` along 1 (mean), along x_hat (radial) and in the rest; they sum to 1."""

    mean: np.ndarray
    radial: np.ndarray
    rest: np.ndarray


def energy_fractions(g, x_hat) -> Energies:
    """Split each row of ``g`` into orthogonal mean, radial and remaining parts; return energy fractions.

    Parameters
    ----------
    g : ndarray, shape (M, D)
        Gradient reaching x_hat (``dy * gamma``).
    x_hat : ndarray, shape (M, D)
        Normalised input; its rows sum to zero, so it is orthogonal to the all-ones direction.

    Returns
    -------
    Energies of arrays of shape (M,)

    Examples
    --------
    >>> import numpy as np
    >>> x_hat = np.array([[1.0, -1.0, 0.0]])
    >>> e = energy_fractions(np.array([[1.0, 1.0, 1.0]]) + x_hat, x_hat)
    >>> [round(float(v[0]), 3) for v in e]
    [0.6, 0.4, 0.0]
    """
    D = g.shape[-1]
    total = (g * g).sum(-1)
    mean_part = np.broadcast_to(g.mean(-1, keepdims=True), g.shape)
    u = x_hat / np.linalg.norm(x_hat, axis=-1, keepdims=True)
    radial_part = (g * u).sum(-1, keepdims=True) * u
    rest = g - mean_part - radial_part
    with np.errstate(invalid="ignore", divide="ignore"):
        return Energies(
            (mean_part * mean_part).sum(-1) / total,
            (radial_part * radial_part).sum(-1) / total,
            (rest * rest).sum(-1) / total,
        )


def random_fraction(g, rng) -> np.ndarray:
    """Fraction of each row's :math:`\\|g\\|^2` along a fresh random unit direction: the baseline.

    A direction drawn uniformly on the sphere carries on average exactly 1/D of any vector's energy,
    so this is what "removing one direction" costs when the direction knows nothing about ``g``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> f = random_fraction(np.ones((20000, 8)), rng)
    >>> bool(abs(f.mean() - 1 / 8) < 0.01)
    True
    """
    r = rng.standard_normal(g.shape)
    r /= np.linalg.norm(r, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (g * r).sum(-1) ** 2 / (g * g).sum(-1)


def surrogate_dx(kind: str, g, x_hat, rstd):
    """The true LayerNorm backward or a cheaper surrogate, as a function of g = dy * gamma.

    ``'true'``: rstd (g - mean g - x_hat mean(g x_hat)). ``'center_scale'``: rstd (g - mean g), which
    forgets the radial term (RMSNorm-like reasoning applied backwards). ``'scale'``: rstd g, which
    forgets both projections, as if the mean and variance were constants (Xu et al.'s "DetachNorm").
    ``'identity'``: g, the straight-through estimator that treats LayerNorm as the identity.
    """
    rstd = np.asarray(rstd)[..., None]
    if kind == "true":
        return rstd * (g - g.mean(-1, keepdims=True) - x_hat * (g * x_hat).mean(-1, keepdims=True))
    if kind == "center_scale":
        return rstd * (g - g.mean(-1, keepdims=True))
    if kind == "scale":
        return rstd * g
    if kind == "identity":
        return g.copy()
    raise ValueError(f"kind must be one of {SURROGATES}, got {kind!r}")


SURROGATES = ("true", "center_scale", "scale", "identity")


def cosine(a, b) -> float:
    """Cosine similarity of two arrays taken as flat vectors."""
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _make_data(rng, n, teacher):
    # a smooth fixed teacher: y = sin(1.5 w1 . x) + 0.5 (w2 . x)^2 + a little noise
    x = rng.standard_normal((n, teacher.shape[1]))
    y = np.sin(1.5 * x @ teacher[0]) + 0.5 * (x @ teacher[1]) ** 2 + 0.05 * rng.standard_normal(n)
    return x, y[:, None]


def train_mlp(steps=300, width=64, depth=3, d_in=16, batch=128, lr=3e-3, backward="true", seed=0,
              input_offset=0.0, record=True):
    """Train an MLP ``[Linear -> LayerNorm -> tanh] * depth -> Linear`` with Adam on a synthetic regression.

    Every step records, for each LayerNorm, the energy fractions of its g, the fraction along a random
    unit direction (the baseline, from its own random stream so that recording never changes the
    training), and the cosine similarity of each surrogate's dx with the true dx, whatever
    ``backward`` the network is trained with.

    Parameters
    ----------
    steps, width, depth, d_in, batch : int
    lr : float
        Adam learning rate.
    backward : {'true', 'center_scale', 'identity'}
        The LayerNorm backward used for training.
    seed : int
    input_offset : float
        Added to the first layer's pre-activations' bias at initialisation, to give rows a large mean.
    record : bool
        Record the per-step measurements (``False`` trains faster and gives the same losses).

    Returns
    -------
    dict with ``loss`` (steps,), ``energy`` {part: (steps, depth)}, ``random`` (steps, depth),
    ``cos`` {kind: (steps, depth)} (all zero when ``record`` is false), and ``test_loss`` (float, on
    fresh data after training).

    Examples
    --------
    >>> h = train_mlp(steps=3, width=8, depth=2, batch=16)
    >>> h["loss"].shape, h["energy"]["radial"].shape, h["random"].shape
    ((3,), (3, 2), (3, 2))
    """
    if backward not in SURROGATES:
        raise ValueError(f"backward must be one of {SURROGATES}, got {backward!r}")
    rng = np.random.default_rng(seed)
    baseline_rng = np.random.default_rng([seed, 1])  # the random directions, apart from the training's
    teacher = rng.standard_normal((2, d_in)) / np.sqrt(d_in)
    sizes = [d_in] + [width] * depth
    params = []
    for i in range(depth):
        W = rng.standard_normal((sizes[i], sizes[i + 1])) / np.sqrt(sizes[i])
        b = np.full(sizes[i + 1], input_offset if i == 0 else 0.0)
        params += [W, b, np.ones(width), np.zeros(width)]  # Linear, then LayerNorm gamma, beta
    params += [rng.standard_normal((width, 1)) / np.sqrt(width), np.zeros(1)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    hist = {"loss": np.zeros(steps), "energy": {k: np.zeros((steps, depth)) for k in Energies._fields},
            "random": np.zeros((steps, depth)), "cos": {k: np.zeros((steps, depth)) for k in SURROGATES[1:]}}

    def forward(x):
        acts = []
        h = x
        for i in range(depth):
            W, b, gamma, beta = params[4 * i: 4 * i + 4]
            z = h @ W + b
            y, cache = layer_norm_forward(z, gamma, beta)
            a = np.tanh(y)
            acts.append((h, cache, a))
            h = a
        return h @ params[-2] + params[-1], acts

    for step in range(steps):
        x, t = _make_data(rng, batch, teacher)
        out, acts = forward(x)
        err = out - t
        hist["loss"][step] = float((err**2).mean())
        grads = [None] * len(params)
        d_out = 2 * err / batch
        grads[-2] = acts[-1][2].T @ d_out
        grads[-1] = d_out.sum(0)
        dh = d_out @ params[-2].T
        for i in reversed(range(depth)):
            h_in, cache, a = acts[i]
            dy = dh * (1 - a * a)  # tanh'
            g = dy * cache.gamma
            true_dx, dgamma, dbeta = layer_norm_backward(dy, cache)
            x_hat = cache.x_hat  # recomputed from the cache on each read: once per layer and step
            if record:
                e = energy_fractions(g, x_hat)
                for k in Energies._fields:
                    hist["energy"][k][step, i] = float(np.mean(getattr(e, k)))
                hist["random"][step, i] = float(np.mean(random_fraction(g, baseline_rng)))
                for k in SURROGATES[1:]:
                    hist["cos"][k][step, i] = cosine(surrogate_dx(k, g, x_hat, cache.rstd), true_dx)
            dz = true_dx if backward == "true" else surrogate_dx(backward, g, x_hat, cache.rstd)
            W = params[4 * i]
            grads[4 * i], grads[4 * i + 1] = h_in.T @ dz, dz.sum(0)
            grads[4 * i + 2], grads[4 * i + 3] = dgamma, dbeta
            dh = dz @ W.T
        for j, (p, gp) in enumerate(zip(params, grads)):  # Adam
            m[j] = 0.9 * m[j] + 0.1 * gp
            v[j] = 0.999 * v[j] + 0.001 * gp * gp
            p -= lr * (m[j] / (1 - 0.9 ** (step + 1))) / (np.sqrt(v[j] / (1 - 0.999 ** (step + 1))) + 1e-8)
    x, t = _make_data(np.random.default_rng(seed + 10**6), 2048, teacher)
    hist["test_loss"] = float(((forward(x)[0] - t) ** 2).mean())
    return hist
