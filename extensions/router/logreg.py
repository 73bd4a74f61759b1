"""L2-regularised multinomial logistic regression in numpy (no scikit-learn, no scipy).

Minimises ``mean cross-entropy + ||W||² / (2·C·n)`` (the bias is not penalised): the same
optimum as scikit-learn's ``LogisticRegression(C=C)`` with its multinomial loss. The
solver is L-BFGS with a backtracking (Armijo) line search: deterministic, no random
start. Matrix products run in float32; the optimiser's state is float64.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Fit:
    weights: F32  # (k, d)
    bias: F32  # (k,)
    iterations: int
    converged: bool


def _loss_and_grad(
    theta: F64, x: F32, y: npt.NDArray[np.int64], k: int, lam: float, sample_weight: F64
) -> tuple[float, F64]:
    n, d = x.shape
    w = theta[: k * d].reshape(k, d)
    b = theta[k * d :]
    logits = x @ w.T.astype(np.float32) + b.astype(np.float32)
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    sums = logits.sum(axis=1, keepdims=True)
    logits /= sums
    rows = np.arange(n)
    picked = np.maximum(logits[rows, y], np.float32(1e-30))
    loss = float(np.dot(sample_weight, -np.log(picked.astype(np.float64))))
    loss += 0.5 * lam * float(np.dot(theta[: k * d], theta[: k * d]))
    logits[rows, y] -= 1.0
    logits *= sample_weight.astype(np.float32)[:, None]
    grad_w = (logits.T @ x).astype(np.float64) + lam * w
    grad_b = logits.sum(axis=0, dtype=np.float64)
    return loss, np.concatenate([grad_w.ravel(), grad_b])


def fit_multinomial(
    x: F32,
    y: npt.NDArray[np.int64],
    k: int,
    c: float = 20.0,
    sample_weight: F64 | None = None,
    max_iter: int = 1000,
    tol: float = 1e-5,
    memory: int = 10,
) -> Fit:
    """Fit ``softmax(x @ W.T + b)`` to class indices ``y`` in ``0..k-1``.

    ``sample_weight`` scales each row's loss (default 1); ``c`` is the inverse of the
    regularisation strength, as in scikit-learn. Stops when the largest gradient entry
    is below ``tol`` or the loss stops decreasing.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if n == 0 or k < 2:
        raise ValueError("need rows and at least two classes")
    weights = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    total = float(weights.sum())
    weights = weights / total  # the mean loss: tolerances do not depend on n
    lam = 1.0 / (c * total)
    theta = np.zeros(k * d + k)
    f, g = _loss_and_grad(theta, x, y, k, lam, weights)
    history: deque[tuple[F64, F64, float]] = deque(maxlen=memory)
    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        if float(np.abs(g).max()) < tol:
            converged = True
            break
        direction = _two_loop(g, history)
        slope = float(np.dot(g, direction))
        if slope >= 0:  # not a descent direction: restart from the gradient
            history.clear()
            direction, slope = -g, -float(np.dot(g, g))
        step = 1.0 if history else min(1.0, 1.0 / float(np.abs(g).sum()))
        for _ in range(40):  # backtracking until the Armijo condition holds
            trial = theta + step * direction
            f_new, g_new = _loss_and_grad(trial, x, y, k, lam, weights)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break  # no decrease possible at float precision: as good as it gets
        s, yv = trial - theta, g_new - g
        sy = float(np.dot(s, yv))
        if sy > 1e-10 * float(np.dot(yv, yv)):
            history.append((s, yv, 1.0 / sy))
        decrease = f - f_new
        theta, f, g = trial, f_new, g_new
        if decrease <= 1e-12 * max(1.0, abs(f)):
            converged = True
            break
    w = theta[: k * d].reshape(k, d).astype(np.float32)
    b = theta[k * d :].astype(np.float32)
    return Fit(w, b - b.mean(), iterations, converged)


def _two_loop(g: F64, history: deque[tuple[F64, F64, float]]) -> F64:
    """The L-BFGS two-loop recursion: an approximate ``-H⁻¹ g``."""
    q = g.copy()
    alphas: list[float] = []
    for s, yv, rho in reversed(history):
        a = rho * float(np.dot(s, q))
        alphas.append(a)
        q -= a * yv
    if history:
        s, yv, _ = history[-1]
        q *= float(np.dot(s, yv)) / float(np.dot(yv, yv))
    for (s, yv, rho), a in zip(history, reversed(alphas), strict=True):
        q += (a - rho * float(np.dot(yv, q))) * s
    return -q
