"""Hyperparameters of the baselines WCoRD is compared against, one dataclass per method.

Defaults follow the papers (or the CRD reference implementation where the paper is silent);
every field is validated in ``__post_init__`` (a bad value raises ``ValueError`` naming the
field) and written to the results through the method's ``hparams`` (``dataclasses.asdict``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["KDConfig", "FitNetConfig", "CRDConfig", "RKDConfig", "PKTConfig"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(owner: str, checks: dict[str, tuple[bool, str]], values: Any) -> None:
    """Raise ``ValueError`` naming every field whose check failed (``{field: (ok, requirement)}``)."""
    bad = [f"{name}={getattr(values, name)!r} (must be {need})"
           for name, (ok, need) in checks.items() if not ok]
    if bad:
        raise ValueError(f"{owner}: invalid {'; '.join(bad)}")


def _positive(value: Any) -> tuple[bool, str]:
    return _is_number(value) and value > 0, "a finite number > 0"


def _non_negative(value: Any) -> tuple[bool, str]:
    return _is_number(value) and value >= 0, "a finite number >= 0"


def _int_at_least(value: Any, low: int) -> tuple[bool, str]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low, f"an int >= {low}"


@dataclass
class KDConfig:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

    ``loss = beta * T^2 * KL(softmax(t / T) || softmax(s / T)) + alpha * CE(s, labels)`` with
    ``t`` the frozen teacher's logits and ``s`` the logits of a linear classifier on the
    student's pooled features.

    Attributes:
        temperature: softmax temperature ``T`` (> 0); 4 as in CRD's benchmark.
        alpha: weight of the cross-entropy on labels (>= 0). 0 (default) keeps the method
            label-free; > 0 reads labels, which the registry entry (``uses_labels=False``) does
            not advertise, so set it only on labelled data and say so in results.
        beta: weight of the distillation (KL) term (>= 0).

    ``alpha`` and ``beta`` cannot both be 0.
    """

    temperature: float = 4.0
    alpha: float = 0.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        _check("KDConfig", {"temperature": _positive(self.temperature), "alpha": _non_negative(self.alpha),
                            "beta": _non_negative(self.beta)}, self)
        if self.alpha == 0 and self.beta == 0:
            raise ValueError("KDConfig: alpha and beta are both 0; set at least one > 0")


@dataclass
class FitNetConfig:
    """Romero et al. 2015, "FitNets: Hints for Thin Deep Nets", on pooled features.

    ``loss = weight * mean((W s + b - t)^2)`` with a trained linear connector ``W, b``.

    Attributes:
        weight: weight of the hint loss (> 0).
    """

    weight: float = 1.0

    def __post_init__(self) -> None:
        _check("FitNetConfig", {"weight": _positive(self.weight)}, self)


@dataclass
class CRDConfig:
    """Tian et al. 2019, "Contrastive Representation Distillation" (NCE form, reference defaults).

    Attributes:
        embed_dim: size of the shared embedding space (linear heads + L2 norm); 128.
        num_negatives: K negatives per batch from the memory banks (capped at N - 1, and at
            N - #distinct(batch indices) per step); 16384.
        tau: temperature of the scores ``exp(<u, v> / tau)``; 0.07.
        momentum: memory-bank momentum in [0, 1); 0.5.
        weight: weight of the (two-direction) NCE loss (> 0); 0.8 (CRD's beta).
        negatives: ``uniform`` (any row outside the batch), ``other_class`` (only rows of
            another class than the anchor's; needs labels) or ``queue`` (every entry of a FIFO
            queue of the last K embeddings instead of N-row banks; sharing ``batch``).
        bank_dtype: storage of the banks or queues: ``float32``, ``bfloat16`` or ``float16``.
        sharing: ``batch`` (one set of K rows scored by every anchor; under ``other_class`` the
            anchor's own class is masked out of it) or ``anchor`` (K rows drawn per anchor).
        replacement: draw with replacement (True) or without (False, default).
            RepDistiller's CIFAR-100 sampler, which the WCoRD paper compares against, is
            ``negatives=other_class, sharing=anchor, replacement=False``.
        alpha: weight of a cross-entropy on labels through a linear student classifier (>= 0);
            0 (default) keeps CRD label-free; CRD's CIFAR recipe trains ``CE + 0.8 * NCE``, i.e. 1.
    """

    embed_dim: int = 128
    num_negatives: int = 16384
    tau: float = 0.07
    momentum: float = 0.5
    weight: float = 0.8
    negatives: str = "uniform"
    sharing: str = "batch"
    replacement: bool = False
    alpha: float = 0.0
    bank_dtype: str = "float32"

    def __post_init__(self) -> None:
        momentum_ok = _is_number(self.momentum) and 0 <= self.momentum < 1
        _check("CRDConfig", {
            "embed_dim": _int_at_least(self.embed_dim, 1),
            "num_negatives": _int_at_least(self.num_negatives, 1),
            "tau": _positive(self.tau),
            "momentum": (momentum_ok, "a number in [0, 1)"),
            "weight": _positive(self.weight),
            "negatives": (self.negatives in ("uniform", "other_class", "queue"),
                          "uniform, other_class or queue"),
            "sharing": (self.sharing in ("batch", "anchor") and (self.negatives != "queue" or self.sharing == "batch"),
                        "batch or anchor (batch under negatives=queue)"),
            "bank_dtype": (self.bank_dtype in ("float32", "bfloat16", "float16"), "float32, bfloat16 or float16"),
            "replacement": (isinstance(self.replacement, bool), "true or false"),
            "alpha": _non_negative(self.alpha),
        }, self)


@dataclass
class RKDConfig:
    """Park et al. 2019, "Relational Knowledge Distillation" (distance + angle).

    Attributes:
        distance_weight: weight of the distance-wise term (>= 0); 25.
        angle_weight: weight of the angle-wise term (>= 0); 50.

    The two weights cannot both be 0.
    """

    distance_weight: float = 25.0
    angle_weight: float = 50.0

    def __post_init__(self) -> None:
        _check("RKDConfig", {"distance_weight": _non_negative(self.distance_weight),
                             "angle_weight": _non_negative(self.angle_weight)}, self)
        if self.distance_weight == 0 and self.angle_weight == 0:
            raise ValueError("RKDConfig: distance_weight and angle_weight are both 0; set at least one > 0")


@dataclass
class PKTConfig:
    """Passalis & Tefas 2018, "Learning Deep Representations with Probabilistic Knowledge Transfer".

    Attributes:
        weight: weight of the KL between the teacher's and the student's conditional
            probability distributions (> 0).
    """

    weight: float = 1.0

    def __post_init__(self) -> None:
        _check("PKTConfig", {"weight": _positive(self.weight)}, self)
