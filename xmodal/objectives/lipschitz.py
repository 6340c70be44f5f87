"""Measuring the Lipschitz constant of a critic ``g(t, s)`` in its raw inputs.

A Wasserstein critic must be ``1/tau``-Lipschitz in the teacher features ``t`` and in the
student features ``s``; these helpers measure it on any differentiable ``score(t, s) -> [B]``
(e.g. :meth:`~xmodal.objectives.wcord.WCoRDLoss.score`), and search for the worst case by
training the critic's parameters to maximise its gradient (what the tests and
``benchmarks/lipschitz_critic.py`` do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["gradient_norms", "maximise_gradient"]

Score = Callable[[Tensor, Tensor], Tensor]


def gradient_norms(
    score: Score, t: Tensor, s: Tensor, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    """``|grad_t g(t_i, s_i)|`` and ``|grad_s g(t_i, s_i)|``, each ``[B]``.

    For pairs ``t`` ``[B, Dt]``, ``s`` ``[B, Ds]`` (row ``i`` of the gradient of ``sum_i g_i``
    is ``grad g_i``: pairs are scored independently).
    """
    t = t.detach().requires_grad_(True)
    s = s.detach().requires_grad_(True)
    grad_t, grad_s = torch.autograd.grad(score(t, s).sum(), (t, s), create_graph=create_graph)
    return grad_t.norm(dim=1), grad_s.norm(dim=1)


def maximise_gradient(
    score: Score,
    parameters: Iterable[torch.nn.Parameter],
    dims: tuple[int, int],
    scales: Sequence[float],
    steps: int,
    lr: float = 0.05,
    batch: int = 32,
    seed: int = 21,
) -> None:
    """Adversary: ``steps`` Adam steps on ``parameters`` that maximise the mean gradient norms.

    At random Gaussian features of dimensions ``dims`` = ``(Dt, Ds)``, cycling through
    ``scales`` (small scales are where an L2-normalised critic breaks).
    """
    opt = torch.optim.Adam(parameters, lr=lr)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        scale = scales[step % len(scales)]
        t = torch.randn(batch, dims[0], generator=g) * scale
        s = torch.randn(batch, dims[1], generator=g) * scale
        norm_t, norm_s = gradient_norms(score, t, s, create_graph=True)
        opt.zero_grad()
        torch.autograd.backward(-(norm_t.mean() + norm_s.mean()))
        opt.step()
