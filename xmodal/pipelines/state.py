"""What stages hand each other: one typed :class:`StageState` and its records.

The ``stage`` decorator declares which of its fields a stage needs and which it produces, so
that a pipeline spec whose stages do not fit together is refused when it is loaded. Each
encoder is handed on as a :class:`ModelRecord`, each seed's frozen teacher outputs as a
:class:`~xmodal.training.train.TeacherOutputs`; result rows stay plain dicts, as
``results.json`` holds them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xmodal.core.registry import STAGES

if TYPE_CHECKING:
    from xmodal.training.train import TeacherOutputs

__all__ = ["ModelRecord", "StageState", "stage", "check_stage_order"]


@dataclass(frozen=True)
class ModelRecord:
    """One trained or loaded encoder, as the stages after the one that made it see it.

    Only its values enter cache keys and result rows, never the record itself.

    Attributes:
        seed: the run seed it belongs to (a probe target's recorded seed, else 0).
        modality: the modality it reads.
        method: the method that trained it; ``"teacher"`` for the teacher.
        role: ``"teacher"``, ``"student"`` or ``"pretrained"`` (a backbone probed as is).
        directory: its folder (``classifier.pt`` and ``heads.pt`` live there when it has them).
        encoder: its backbone's registered name.
        checkpoint: the file :func:`~xmodal.encoders.export.load_encoder` reads (``encoder.pt``
            or an export's ``encoder.json``).
        digest: that file's content digest (a probe target's: see ``target_digest``); every
            cache computed from the encoder is keyed on it.
        key: its unit's key (a loaded encoder's: its digest).
        hparams: the settings that change its numbers, copied into its result rows.
        teacher: the digest of the teacher it learnt from, or None.
        classes: the number of classes of the teacher's logits ``Ct`` (teacher only), or None.
        own_classes: those classes are the teacher's own label space, not the dataset's.
    """

    seed: int
    modality: str
    method: str
    role: str
    directory: str
    encoder: str
    checkpoint: str
    digest: str
    key: str
    hparams: dict[str, Any]
    teacher: str | None = None
    classes: int | None = None
    own_classes: bool = False


@dataclass
class StageState:
    """The fields stages read and write; the stage that produces each is in brackets.

    Attributes:
        dataset_source: the registered dataset object (``preprocess``).
        dataset: its loaded splits, a :class:`~xmodal.data.source.LoadedDataset`
            (``preprocess``).
        data_key: fingerprint of the prepared data, part of every later cache key
            (``preprocess``).
        teachers: per seed, the teacher's train-split outputs (``teacher``).
        models: one record per trained or loaded encoder (``teacher``, ``distill``).
        rows: result rows, one per model x probe x metric x seed (``probe``, ``classify``).
        summary: rows summarised over seeds (``report``).
    """

    dataset_source: Any = None
    dataset: Any = None
    data_key: str | None = None
    teachers: dict[int, TeacherOutputs] = field(default_factory=dict)
    models: list[ModelRecord] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)


FIELDS = frozenset(f.name for f in dataclasses.fields(StageState))


def stage(
    name: str,
    description: str,
    *,
    needs: Iterable[str] = (),
    produces: Iterable[str] = (),
    config: Iterable[str] = (),
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``fn(ctx)`` as stage ``name``.

    ``needs`` and ``produces`` declare the :class:`StageState` fields it reads and writes;
    ``config`` the run-config sections it acts on (e.g. ``("teacher",)``: the load-time checks of
    a section run when a stage acts on it).
    """

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        fn.needs = frozenset(needs)  # type: ignore[attr-defined]
        fn.produces = frozenset(produces)  # type: ignore[attr-defined]
        fn.config_sections = frozenset(config)  # type: ignore[attr-defined]
        stage_contract(name, fn)
        STAGES.add(name, fn, description)
        return fn

    return decorate


def stage_contract(name: str, entry: Any) -> None:
    """Check that stage ``name`` is callable with ``needs``/``produces`` sets of state fields."""
    if not callable(entry):
        raise TypeError(f"stage '{name}' must be callable as fn(ctx), got {entry!r}")
    for attribute in ("needs", "produces"):
        value = getattr(entry, attribute, None)
        if not isinstance(value, (set, frozenset)):
            raise TypeError(
                f"stage '{name}' must declare '{attribute}' (a set of StageState "
                "fields); register it with xmodal.pipelines.state.stage"
            )
        unknown = set(value) - FIELDS
        if unknown:
            raise ValueError(
                f"stage '{name}'.{attribute} names {sorted(unknown)}, not fields of "
                f"StageState ({', '.join(sorted(FIELDS))})"
            )


STAGES.contract = stage_contract


def check_stage_order(pipeline: str, stages: list[str]) -> None:
    """Raise ``ValueError`` when a stage needs a field that no earlier stage produces.

    The message names the stages that would produce it.
    """
    available: set[str] = set()
    for name in stages:
        fn = STAGES.get(name)
        missing = sorted(fn.needs - available)
        if missing:
            producers = sorted(
                {
                    other
                    for other in STAGES.names()
                    if set(missing) & getattr(STAGES.get(other), "produces", set())
                }
            )
            raise ValueError(
                f"pipeline '{pipeline}': stage '{name}' needs {', '.join(missing)}, "
                f"which no stage before it produces; put "
                f"{' or '.join(repr(p) for p in producers) or 'a stage producing it'} before it"
            )
        available |= fn.produces
