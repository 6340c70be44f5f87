"""Measured Lipschitz constant of WCoRD's critic g(t, s) in the raw features.

Measured at several feature scales, after the heads are trained adversarially to maximise it.

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
from xmodal.objectives.lipschitz import gradient_norms, maximise_gradient

SCALES = (0.01, 0.1, 1.0, 10.0)


def measure(loss: WCoRDLoss, scale: float) -> float:
    g = torch.Generator().manual_seed(9)
    norm_t, norm_s = gradient_norms(
        loss.score,
        torch.randn(512, 12, generator=g) * scale,
        torch.randn(512, 10, generator=g) * scale,
    )
    return float(torch.maximum(norm_t, norm_s).max()) * loss.options.tau


def build(variant: str) -> WCoRDLoss:
    lipschitz = "none" if variant == "none" else "spectral"
    loss = WCoRDLoss(10, 12, num_samples=40, embed_dim=16, lipschitz=lipschitz)
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
        maximise_gradient(loss.score, loss.parameters(), (12, 10), SCALES, args.steps)
        trained = [measure(loss, s) for s in SCALES]
        results[variant] = {"init": at_init, "adversarial": trained}
        print(
            f"{variant:16s} max|grad g|*tau at scales {SCALES}: init "
            + " ".join(f"{x:.3g}" for x in at_init)
            + " | after adversary "
            + " ".join(f"{x:.3g}" for x in trained)
        )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "lipschitz_critic.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
