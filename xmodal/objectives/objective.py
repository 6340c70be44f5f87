"""The contract of a distillation method: an :class:`Objective`, registered by class in ``METHODS``.

An objective turns a batch of student features (and the frozen teacher's, labels and dataset
indices where it needs them) into a loss. It declares its options dataclass and what it needs,
so a config that cannot serve it is refused when it is loaded, not after the teacher trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from xmodal.core.registry import METHODS

__all__ = [
    "NEEDS",
    "Objective",
    "ObjectiveContext",
    "check_room_for_negatives",
    "teacher_has_own_classes",
]

NEEDS = ("teacher", "teacher_logits", "labels")
"""What an objective may need: teacher features, the teacher's logits (a teacher with a
classifier, over the dataset's classes or its own) and labels of the training split."""


@dataclass
class ObjectiveContext:
    """What an objective is built from, beside its options.

    Feature sizes, the training split's size and classes, the seed, the teacher's train-split
    logits (when it has a classifier), labels, batch size.

    ``teacher_logits`` are over the teacher's own classes ``Ct``: the dataset's when it was
    trained on the dataset's labels, another label space when ``teacher_own_classes`` (a
    transfer teacher) or ``Ct != num_classes`` (see :func:`teacher_has_own_classes`). In the
    latter case logit methods read them through a student head of size ``Ct``, apart from the
    classifier over the dataset's ``num_classes``.
    """

    student_dim: int
    teacher_dim: int | None
    num_samples: int
    num_classes: int
    seed: int = 0
    teacher_logits: Tensor | None = None  # [N, Ct] frozen teacher logits on the train split
    train_labels: Tensor | None = None  # [N] train-split labels, for label-aware negatives
    batch_size: int | None = None  # training batch size, when known
    teacher_own_classes: bool = False  # teacher_logits are over a label space of the teacher's own


def teacher_has_own_classes(context: ObjectiveContext) -> bool:
    """Whether the teacher's logits are over classes other than the dataset's.

    Declared so (``teacher_own_classes``) or of another count. False without logits.
    """
    logits = context.teacher_logits
    if logits is None:
        return False
    return context.teacher_own_classes or logits.shape[1] != context.num_classes


class Objective(nn.Module):
    """Base of every method. Subclasses set the class attributes and implement :meth:`forward`.

    Argument order, one for all: the student side first, then the teacher's, as in
    :meth:`forward` ``(student, teacher, labels, indices)`` and :class:`ObjectiveContext`. A
    constructor takes ``(student_dim, teacher_dim or teacher_logits, num_samples, options,
    seed, ...)`` (the parts a method needs, in that order) and keeps its options dataclass as
    ``self.options``, the object :meth:`build` was given (never a copy).

    Class attributes:
        options: dataclass of the method's hyperparameters, or None; its values go to the results.
            Declared as ``class MyMethod(Objective, options=MyOptions)`` (then ``options:
            MyOptions`` in the class body types ``self.options``), or as a plain class attribute
            ``options = MyOptions``. On an instance, ``options`` is the options it was built with.
        options_key: config key of the options (default: the registered name), so that
            variants share one section (``wcord-global`` reads ``distill.wcord``).
        needs: subset of :data:`NEEDS` (see :meth:`needs_for` for needs that depend on options).
        trains: False only for ``none`` (the untrained floor).
        shared_heads: True when the objective has a ``teacher_head`` and a ``student_head``
            (:class:`~xmodal.objectives.critic.ProjectionHead`) into a shared space; they are
            saved after training (``heads.pt``, :mod:`xmodal.objectives.shared_heads`) and
            read by the ``zero-shot`` probe.
    """

    options: Any = None  # the class: the options dataclass type; an instance: its options
    options_key: ClassVar[str | None] = None
    needs: ClassVar[frozenset[str]] = frozenset({"teacher"})
    trains: ClassVar[bool] = True
    shared_heads: ClassVar[bool] = False

    def __init_subclass__(cls, options: type | None = None, **kwargs: Any) -> None:
        """``class MyMethod(Objective, options=MyOptions)`` sets ``MyMethod.options``."""
        super().__init_subclass__(**kwargs)
        if options is not None:
            cls.options = options

    @classmethod
    def needs_for(cls, options: Any) -> frozenset[str]:
        """What this method needs with these options (override when an option adds a need)."""
        return cls.needs

    @classmethod
    def build(cls, context: ObjectiveContext, options: Any) -> Objective:
        """The objective for one training run, holding ``options`` as they are.

        Raise ``ValueError`` with the fix if the set-up cannot serve it.
        """
        raise NotImplementedError(f"{cls.__name__} does not implement build()")

    @classmethod
    def hparams_of(cls, options: Any) -> dict[str, Any]:
        """Every hyperparameter by name, as the results record them."""
        return dataclasses.asdict(options) if options is not None else {}

    def forward(
        self, student: Tensor, teacher: Tensor | None, labels: Tensor | None, indices: Tensor
    ) -> dict[str, Tensor]:
        """The loss of one batch: at least ``{"loss": scalar}``.

        ``student`` ``[B, Ds]``, ``teacher`` ``[B, Dt]`` (or None), ``labels`` ``[B]`` long (or
        None), ``indices`` ``[B]`` long dataset indices. Methods with a memory also return
        detached ``teacher_embed``/``student_embed`` ``[B, d]``.
        """
        raise NotImplementedError

    def update_memory(self, indices: Tensor, teacher_embed: Tensor, student_embed: Tensor) -> None:
        """Called after each optimiser step with tensors gathered from every process.

        For memory banks and queues; nothing by default.
        """


def check_room_for_negatives(context: ObjectiveContext, method: str) -> None:
    """Refuse a batch that holds the whole training set, for methods with a memory bank.

    They draw negatives outside the batch, and such a batch leaves none. Fail at build time
    with the fix, not mid-training.
    """
    if context.batch_size is not None and context.batch_size >= context.num_samples:
        raise ValueError(
            f"'{method}' draws negatives from training samples outside the batch, "
            f"but the batch size {context.batch_size} covers all {context.num_samples}: "
            "lower distill.optim.batch_size below the training-set size"
        )


def objective_contract(name: str, entry: Any) -> None:
    """A method plugin is an :class:`Objective` subclass with consistent class attributes."""
    if not (isinstance(entry, type) and issubclass(entry, Objective)):
        raise TypeError(
            f"'{name}' must be a subclass of xmodal.objectives.objective.Objective, got {entry!r}"
        )
    unknown = set(entry.needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"'{name}'.needs holds {sorted(unknown)}; allowed: {', '.join(NEEDS)}")
    if entry.trains and entry.build.__func__ is Objective.build.__func__:  # type: ignore[attr-defined]
        raise TypeError(f"'{name}' trains but does not implement build(context, options)")


METHODS.contract = objective_contract
