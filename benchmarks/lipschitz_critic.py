"""Measured Lipschitz constant of WCoRD's critic g(t, s) in the raw features, at several
feature scales, after the heads are trained adversarially to maximise it.

Compares, in one run: the default (spectral heads projected onto the unit ball), the previous
construction (spectral heads L2-normalised onto the sphere: the reference) and lipschitz="none".
The bound is max |grad g| * tau <= 1; the output prints that ratio per scale.

    python3 benchmarks/lipschitz_critic.py [--steps 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from xmodal.objectives import WCoRDLoss
from xmodal.objectives.critic import ProjectionHead

SCALES = (0.01, 0.1, 1.0, 10.0)


def measure(loss: WCoRDLoss, scale: float) -> float:
    g = torch.Generator().manual_seed(9)
    t = (torch.randn(512, 12, generator=g) * scale).requires_grad_(True)
    s = (torch.randn(512, 10, generator=g) * scale).requires_grad_(True)
    grad_t, grad_s = torch.autograd.grad(loss.score(t, s).sum(), (t, s))
    return float(torch.maximum(grad_t.norm(dim=1), grad_s.norm(dim=1)).max()) * loss.critic.tau


def adversary(loss: WCoRDLoss, steps: int) -> None:
    opt = torch.optim.Adam(loss.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(21)
    for step in range(steps):
        scale = SCALES[step % len(SCALES)]
        t = (torch.randn(32, 12, generator=g) * scale).requires_grad_(True)
        s = (torch.randn(32, 10, generator=g) * scale).requires_grad_(True)
        grad_t, grad_s = torch.autograd.grad(loss.score(t, s).sum(), (t, s), create_graph=True)
        opt.zero_grad()
        (-(grad_t.norm(dim=1).mean() + grad_s.norm(dim=1).mean())).backward()
        opt.step()


def build(variant: str) -> WCoRDLoss:
    loss = WCoRDLoss(12, 10, num_samples=40, embed_dim=16, lipschitz="none" if variant == "none" else "spectral")
    if variant == "spectral-sphere":  # the construction before issue 9
        torch.manual_seed(0)
        loss.teacher_head = ProjectionHead(12, 16, spectral=True, onto="sphere")
        loss.student_head = ProjectionHead(10, 16, spectral=True, onto="sphere")
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    results = {}
    for variant in ("spectral-ball", "spectral-sphere", "none"):
        loss = build(variant)
        at_init = [measure(loss, s) for s in SCALES]
        adversary(loss, args.steps)
        trained = [measure(loss, s) for s in SCALES]
        results[variant] = {"init": at_init, "adversarial": trained}
        print(f"{variant:16s} max|grad g|*tau at scales {SCALES}: init "
              + " ".join(f"{x:.3g}" for x in at_init) + " | after adversary "
              + " ".join(f"{x:.3g}" for x in trained))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "lipschitz_critic.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
