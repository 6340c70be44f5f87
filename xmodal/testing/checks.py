"""The contract checks of each registry kind, run on one registered component at a time.

Each check takes the component's registry name and its loaded entry, and raises (an
:class:`AssertionError` from :func:`expect`, or the component's own exception) saying what is
wrong. Inputs are tiny and seeded: a check runs in well under a second for a small component.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xmodal.core.errors import XmodalError
from xmodal.core.registry import BACKBONES, DATASETS, FRONTENDS, PROBES, REGISTRIES

SMALL_BACKBONE = "resnet8"
"""Image front ends are checked behind it; others behind their default or a built-in backbone."""

#: the number of dimensions of a network input (and of each feature map) of each layout
LAYOUT_DIMS = {"image": 4, "points": 3, "sequence": 3}


class ContractError(AssertionError):
    """A component breaks its kind's contract; the message names it, its package and the checks."""


class Skipped(Exception):  # noqa: N818 (a verdict, not an error)
    """Raised by a check that does not apply to a component (the reason is its message)."""


def expect(condition: bool, message: str) -> None:
    """Raise :class:`AssertionError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise AssertionError(message)


@dataclass(frozen=True)
class Check:
    """One named check of a kind: ``run(name, entry)`` raises when the contract is broken."""

    name: str
    doc: str
    run: Callable[[str, Any], None]


# --- every kind -------------------------------------------------------------------------------


def _options_check(kind: str) -> Callable[[str, Any], None]:
    def check(name: str, entry: Any) -> None:
        """Every option has a default, and the defaults pass the options' own checks.

        The options: an ``options`` dataclass, or (front ends, backbones) the signature's.
        """
        options = REGISTRIES[kind].options_type(name)
        if options is None:
            return
        for field in dataclasses.fields(options):
            missing = dataclasses.MISSING
            expect(
                field.default is not missing or field.default_factory is not missing,
                f"option '{field.name}' has no default (options are optional in the config)",
            )
        options()  # the defaults pass the options' own checks (__post_init__)

    return check


def holds(contract: Callable[[str, Any], None], name: str, entry: Any) -> None:
    """Run a kind's load-time ``contract`` on ``entry``; what it finds wrong as an assertion."""
    try:
        contract(name, entry)
    except (TypeError, ValueError) as exc:
        raise AssertionError(str(exc)) from None


def _registry_contract(kind: str) -> Callable[[str, Any], None]:
    def check(name: str, entry: Any) -> None:
        """The check the registry runs on a plugin of this kind when it loads."""
        try:
            REGISTRIES[kind].check_plugin(name, entry, f"'{name}'")
        except XmodalError as exc:  # keep what is wrong, not the registry's prefix
            raise AssertionError(str(exc).split(" contract: ", 1)[-1]) from None

    return check


# --- front ends and backbones -----------------------------------------------------------------


def _layout(entry: object) -> str:
    from xmodal.encoders.base import layout_of

    return layout_of(entry)


def _finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def frontend_forward(name: str, entry: Any) -> None:
    """Built with its defaults, it maps ``example_input(3)`` to network input of its layout.

    That is finite float32 ``[3, out_channels, ...]`` with the number of dimensions of its
    layout (4 for images, 3 for points and sequences).
    """
    frontend = entry()
    example = frontend.example_input(3)
    expect(
        not isinstance(example, Tensor) or len(example) == 3,
        f"example_input(3) holds {len(example)} samples, not 3",
    )
    out = frontend(example)
    expect(isinstance(out, Tensor), f"forward returns {type(out).__name__}, not a Tensor")
    layout = _layout(entry)
    dims = LAYOUT_DIMS.get(layout, out.ndim)
    expect(
        out.ndim == dims and tuple(out.shape[:2]) == (3, frontend.out_channels),
        f"example_input(3) -> {list(out.shape)}, not [3, out_channels={frontend.out_channels}, "
        f"...] with {dims} dimensions (layout '{layout}')",
    )
    expect(out.dtype == torch.float32, f"forward gives {out.dtype}, not torch.float32")
    expect(_finite(out), "forward gives NaN or inf on example_input(3)")


def backbone_forward(name: str, entry: Any) -> None:
    """Built for 3 input channels, it runs on a random input of its layout.

    Built with its defaults, or its factory's ``example_options``; the input is
    :func:`~xmodal.encoders.base.layout_example` (batch 2). It gives one feature map per stage
    ``[2, stage_channels[i], ...]`` and an embedding ``[2, out_dim]``, all finite.
    """
    from xmodal.encoders.base import example_options, layout_example

    layout = _layout(entry)
    backbone = entry(in_channels=3, **example_options(entry)).train()
    x = layout_example(layout, 3, batch=2)
    maps = backbone.forward_features(x)
    expect(
        isinstance(maps, (list, tuple)) and all(isinstance(m, Tensor) for m in maps),
        f"forward_features returns {type(maps).__name__}, not a list of tensors",
    )
    shapes = [list(m.shape) for m in maps]
    expect(
        len(maps) == len(backbone.stage_channels)
        and all(
            m.ndim == LAYOUT_DIMS[layout] and m.shape[0] == 2 and m.shape[1] == c
            for m, c in zip(maps, backbone.stage_channels, strict=False)
        ),
        f"forward_features on {list(x.shape)} gives maps {shapes}; stage_channels says "
        f"{list(backbone.stage_channels)} ([2, C_i, ...] with {LAYOUT_DIMS[layout]} dimensions)",
    )
    expect(all(_finite(m) for m in maps), "forward_features gives NaN or inf")
    if getattr(backbone, "embed", None) is not None:
        embedding = backbone.embed(x)
    elif getattr(backbone, "pool", None) is not None:
        embedding = backbone.pool(maps[-1])
    else:
        embedding = maps[-1].flatten(2).mean(-1)
    expect(
        isinstance(embedding, Tensor) and tuple(embedding.shape) == (2, backbone.out_dim),
        f"the embedding is {list(getattr(embedding, 'shape', []))}, not [2, out_dim="
        f"{backbone.out_dim}]",
    )
    expect(_finite(embedding), "the embedding holds NaN or inf")


def _own_first(names: list[str], registry: Any) -> list[str]:
    own = [n for n in names if registry.package(n) == "xmodal"]
    return own + [n for n in names if n not in own]


def backbone_behind(modality: str) -> str:
    """The backbone a front end is checked behind.

    ``resnet8`` for images, else the front end's ``default_backbone``, else the first built-in
    backbone of its layout.
    """
    from xmodal.encoders.base import backbone_fits

    default = getattr(FRONTENDS.get(modality), "default_backbone", None)
    candidates = [SMALL_BACKBONE, *([default] if default else [])]
    candidates += _own_first(BACKBONES.names(), BACKBONES)
    fits = [b for b in candidates if b in BACKBONES and backbone_fits(b, modality)]
    expect(bool(fits), f"no registered backbone takes the layout of '{modality}'")
    return str(fits[0])


def frontend_behind(backbone: str) -> str:
    """The front end a backbone is checked behind: ``rgb``, else a built-in of its layout."""
    from xmodal.encoders.base import backbone_fits

    candidates = ["rgb", *_own_first(FRONTENDS.names(), FRONTENDS)]
    fits = [m for m in candidates if m in FRONTENDS and backbone_fits(backbone, m)]
    expect(bool(fits), f"no registered front end gives the layout backbone '{backbone}' takes")
    return fits[0]


def encoder_step(encoder: Any, example: Any, label: str) -> None:
    """One forward and backward pass of a built encoder on ``example`` (2 samples).

    The embedding is ``[2, embed_dim]`` float32 and the feature maps match
    ``stage_channels``; gradients reach every trainable weight, finite. ``label`` names the
    encoder in the messages (``'depth' + 'resnet8'``).
    """
    embedding = encoder(example)
    expect(
        tuple(embedding.shape) == (2, encoder.embed_dim) and embedding.dtype == torch.float32,
        f"{label} embeds example_input(2) as {list(embedding.shape)} "
        f"{embedding.dtype}, not [2, embed_dim={encoder.embed_dim}] float32",
    )
    maps = encoder.forward_features(example)
    expect(
        [m.shape[1] for m in maps] == encoder.stage_channels and all(m.shape[0] == 2 for m in maps),
        f"feature maps {[list(m.shape) for m in maps]} do not match stage_channels "
        f"{encoder.stage_channels}",
    )
    embedding.square().sum().backward()
    grads = [(n, p.grad) for n, p in encoder.named_parameters() if p.requires_grad]
    expect(bool(grads), "the encoder has no trainable weights")
    for pname, grad in grads:
        expect(grad is not None, f"no gradient reaches '{pname}'")
        expect(_finite(grad), f"the gradient of '{pname}' holds NaN or inf")


def encoder_round_trip(backbone: str, modality: str) -> None:
    """``backbone`` behind ``modality``'s front end, as a pipeline builds it.

    The embedding is ``[2, embed_dim]`` float32 and its feature maps match ``stage_channels``;
    gradients reach every trainable weight, finite; a seed fixes the initial weights; an
    export loads back to the same embeddings.
    """
    from xmodal.encoders.base import create_encoder, example_options
    from xmodal.encoders.export import export_encoder, load_encoder

    options = example_options(BACKBONES.get(backbone))

    def build() -> Any:
        torch.manual_seed(0)
        return create_encoder(backbone, modality, **options)

    encoder = build().train()
    example = FRONTENDS.get(modality)().example_input(2)
    encoder_step(encoder, example, f"'{modality}' + '{backbone}'")
    again = build()
    for (key, a), b in zip(encoder.state_dict().items(), again.state_dict().values(), strict=True):
        if a.dtype.is_floating_point and "running" not in key:
            expect(torch.equal(a, b), f"the same seed gives other initial weights for '{key}'")
    encoder.eval()
    with tempfile.TemporaryDirectory(prefix="xmodal-check-") as folder:
        export_encoder(encoder, Path(folder), backbone, options, {})
        loaded = load_encoder(folder)
        with torch.no_grad():
            a, b = loaded(example), encoder(example)
    expect(
        torch.allclose(a, b, rtol=1e-5, atol=1e-5),
        f"the exported encoder loads back to other embeddings (max difference "
        f"{float((a - b).abs().max()):.3g})",
    )


def frontend_encoder(name: str, entry: Any) -> None:
    """:func:`encoder_round_trip` behind :func:`backbone_behind` of this front end."""
    encoder_round_trip(backbone_behind(name), name)


def backbone_encoder(name: str, entry: Any) -> None:
    """:func:`encoder_round_trip` behind :func:`frontend_behind` of this backbone."""
    encoder_round_trip(name, frontend_behind(name))


# --- methods ----------------------------------------------------------------------------------

STUDENT_DIM, TEACHER_DIM, SAMPLES, CLASSES, BATCH = 6, 5, 40, 3, 8


def method_context(seed: int = 0) -> Any:
    """The :class:`~xmodal.objectives.objective.ObjectiveContext` methods are checked with.

    Student features of 6 dimensions, teacher features of 5, 40 training samples of 3 classes,
    the teacher's logits and the labels, batches of 8.
    """
    from xmodal.objectives.objective import ObjectiveContext

    g = torch.Generator().manual_seed(99)
    return ObjectiveContext(
        student_dim=STUDENT_DIM,
        teacher_dim=TEACHER_DIM,
        num_samples=SAMPLES,
        num_classes=CLASSES,
        seed=seed,
        teacher_logits=torch.randn(SAMPLES, CLASSES, generator=g),
        train_labels=torch.arange(SAMPLES) % CLASSES,
        batch_size=BATCH,
    )


def method_batch() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A seeded batch: student ``[8, 6]``, teacher ``[8, 5]``, labels ``[8]``, indices ``[8]``."""
    g = torch.Generator().manual_seed(7)
    return (
        torch.randn(BATCH, STUDENT_DIM, generator=g),
        torch.randn(BATCH, TEACHER_DIM, generator=g),
        torch.arange(BATCH) % CLASSES,
        torch.arange(BATCH),
    )


def _method_options(entry: Any) -> Any:
    return entry.options() if entry.options is not None else None


def method_protocol(name: str, entry: Any) -> None:
    """Needs within ``NEEDS`` for its default options; results record every option."""
    from xmodal.objectives.objective import NEEDS, Objective

    expect(
        isinstance(entry, type) and issubclass(entry, Objective),
        f"a method must be a subclass of xmodal.objectives.objective.Objective, got {entry!r}",
    )
    options = _method_options(entry)
    needs = set(entry.needs_for(options))
    expect(needs <= set(NEEDS), f"needs_for(options) gives {sorted(needs - set(NEEDS))}")
    if options is not None:
        missing = {f.name for f in dataclasses.fields(options)} - set(entry.hparams_of(options))
        expect(not missing, f"hparams_of(options) leaves out {sorted(missing)}")


def method_train_step(name: str, entry: Any) -> None:
    """One forward and backward pass: a finite scalar loss whose gradient reaches the student.

    Built from :func:`method_context` with its default options, on :func:`method_batch`: the
    loss is a float32 scalar, and the student's features get a finite gradient.
    """
    if not entry.trains:
        raise Skipped("trains = False: nothing to train")
    objective_step(entry, method_context(), _method_options(entry), method_batch())


def objective_step(
    entry: Any, context: Any, options: Any, batch: tuple[Tensor, Tensor, Tensor, Tensor]
) -> None:
    """Build method ``entry`` from ``context`` and ``options``; one forward and backward pass.

    ``batch``: student ``[B, student_dim]``, teacher ``[B, teacher_dim]``, labels and indices
    ``[B]``. The loss must be a finite float32 scalar whose gradient reaches the student.
    """
    student, teacher, labels, indices = batch
    student.requires_grad_(True)
    objective = entry.build(context, options)
    expect(isinstance(objective, torch.nn.Module), "build() returns no torch.nn.Module")
    out = objective(student, teacher, labels, indices)
    expect(isinstance(out, dict) and "loss" in out, "forward returns no {'loss': ...} dict")
    loss = out["loss"]
    expect(
        isinstance(loss, Tensor) and loss.shape == () and loss.dtype == torch.float32,
        f"the loss is {getattr(loss, 'shape', type(loss).__name__)} "
        f"{getattr(loss, 'dtype', '')}, not a float32 scalar",
    )
    if not _finite(loss):
        raise AssertionError(f"the loss is {loss.detach().item()}")
    loss.backward()
    expect(student.grad is not None, "no gradient reaches the student's features")
    expect(_finite(student.grad), "the student's gradient holds NaN or inf")  # type: ignore[arg-type]  # checked not None above
    for key in ("teacher_embed", "student_embed"):
        if key in out:
            expect(not out[key].requires_grad, f"'{key}' must be detached")
    if "teacher_embed" in out and "student_embed" in out:
        objective.update_memory(indices, out["teacher_embed"], out["student_embed"])


def method_seed(name: str, entry: Any) -> None:
    """Two builds with one seed, the second loading the first's ``state_dict``, give one loss."""
    if not entry.trains:
        raise Skipped("trains = False: nothing to train")
    options = _method_options(entry)
    first = entry.build(method_context(seed=3), options)
    second = entry.build(method_context(seed=3), options)
    second.load_state_dict(first.state_dict())
    with torch.no_grad():
        a, b = first(*method_batch())["loss"], second(*method_batch())["loss"]
    expect(
        torch.allclose(a, b),
        f"the same seed and state_dict give losses {float(a):.6g} and {float(b):.6g}",
    )


# --- probes -----------------------------------------------------------------------------------


def _pooled_split(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    return torch.randn(n, 4, generator=g) + labels.unsqueeze(1).float(), labels


def _probe(name: str, entry: Any) -> Any:
    options = PROBES.options_type(name)
    return entry(options() if options is not None else None)


def probe_protocol(name: str, entry: Any) -> None:
    """Its load-time contract, then built from its default options (or None without options).

    The contract is :func:`~xmodal.evaluation.probe.probe_contract`: a class built as
    ``Cls(options)``, with the ``evaluate`` method of what it consumes and ``metrics`` a tuple of
    names.
    """
    from xmodal.evaluation.probe import probe_contract

    holds(probe_contract, name, entry)
    _probe(name, entry)


def probe_evaluate(name: str, entry: Any) -> None:
    """Run twice on tiny random splits: each metric a finite float, the same both times.

    The splits: 30 samples of 3 classes each (4-dimensional features). The result is a dict
    or a dataclass holding each of ``metrics``.
    """
    results = probe_fits(entry, _probe(name, entry), 2)
    for metric in getattr(entry, "metrics", ()):
        expect(
            results[0][metric] == results[1][metric], f"metric '{metric}' differs between two runs"
        )


def probe_fits(entry: Any, probe: Any, times: int = 1) -> list[dict[str, Any]]:
    """Fit and score ``probe`` (built from class ``entry``) ``times`` times on tiny random splits.

    The evaluate method of what it consumes, on 30 samples of 3 classes (4-dimensional
    features). Each result must be a dict or a dataclass holding every one of ``metrics`` as a
    finite float; returned as dicts.
    """
    from xmodal.evaluation.probe import evaluate_method

    method = evaluate_method(entry)[0]
    if method == "evaluate_maps":
        g = torch.Generator().manual_seed(0)
        split = (torch.randn(6, 4, 4, 4, generator=g), torch.randint(0, 4, (6, 8, 8), generator=g))
        runs = [probe.evaluate_maps(split, split, split, num_classes=3) for _ in range(times)]
    elif method == "evaluate_zero_shot":  # class text vectors, no heads: own space
        feats, labels = _pooled_split(30, 0)
        classes = torch.nn.functional.normalize(torch.eye(3, 4) + 0.1, dim=1)
        runs = [
            probe.evaluate_zero_shot(feats, labels, classes, None, ["a", "b", "c"])
            for _ in range(times)
        ]
    elif method == "evaluate_pairs":
        student = {s: _pooled_split(30, i)[0] for i, s in enumerate(("train", "val", "test"))}
        teacher = {k: v * 2 + 1 for k, v in student.items()}
        runs = [probe.evaluate_pairs(student, teacher) for _ in range(times)]
    else:
        splits = [_pooled_split(30, i) for i in range(3)]
        runs = [probe.evaluate(*splits, num_classes=3) for _ in range(times)]
    results = []
    for r in runs:
        expect(
            isinstance(r, dict) or dataclasses.is_dataclass(r),
            f"it returns {type(r).__name__}, not a dict or a dataclass",
        )
        results.append(r if isinstance(r, dict) else dataclasses.asdict(r))
    for metric in getattr(entry, "metrics", ()):
        value = results[0].get(metric)
        expect(
            isinstance(value, float) and math.isfinite(value),
            f"metric '{metric}' is {value!r}, not a finite float",
        )
    return results


# --- datasets ---------------------------------------------------------------------------------


def dataset_protocol(name: str, entry: Any) -> None:
    """Its load-time contract, then built with no arguments; ``example_options`` are valid.

    The contract is :func:`~xmodal.data.source.dataset_contract` (``name``, ``modalities`` of
    registered front ends, an ``options`` dataclass, ``prepare`` and ``load``, ...). Built, it
    keeps its class's ``name`` and ``modalities``; its ``example_options``, if any, pass the
    options' own checks.
    """
    from xmodal.data.source import dataset_contract

    holds(dataset_contract, name, entry)
    source = entry()
    expect(
        source.name == entry.name and tuple(source.modalities) == tuple(entry.modalities),
        f"built, it says name {source.name!r} and modalities {source.modalities!r}, its class "
        f"{entry.name!r} and {entry.modalities!r} (xmodal reads the class's)",
    )
    example = getattr(entry, "example_options", None)
    if example is not None:
        entry.options(**example)  # the options' own checks (__post_init__)


def dataset_round_trip(name: str, entry: Any) -> None:
    """With its ``example_options``, ``prepare`` into a temporary folder, then ``load``.

    ``example_options`` (a dict of options for a tiny set) on the class; skipped without. It
    must give train, val and test splits, each non-empty with every modality it serves (and
    ``label`` in ``0..num_classes-1`` when it has labels).
    """
    from xmodal.data.source import LoadedDataset, dataset_labelled, dataset_modalities

    example = getattr(entry, "example_options", None)
    if example is None:
        raise Skipped("no example_options: not prepared (set them to check prepare and load)")
    source = entry()
    options = DATASETS.options_type(name)(**example)  # type: ignore[misc]  # a dataclass type
    with tempfile.TemporaryDirectory(prefix="xmodal-check-") as folder:
        path = source.prepare(options, Path(folder) / "data.h5", None)
        loaded = source.load(Path(path))
        expect(isinstance(loaded, LoadedDataset), f"load() returns {type(loaded).__name__}")
        expect(
            set(loaded.splits) == {"train", "val", "test"},
            f"splits are {sorted(loaded.splits)}, not train, val and test",
        )
        keys = list(dataset_modalities(source, options))
        labelled = dataset_labelled(source, options)
        keys += ["label"] if labelled else []
        for split_name, split in loaded.splits.items():
            expect(len(split) > 0, f"the {split_name} split is empty")
            missing = [k for k in keys if k not in split]
            expect(not missing, f"the {split_name} split has no {missing}")
            for key in keys:
                rows = split.read(key, [0])
                expect(len(rows) == 1, f"{split_name}/{key}: read(key, [0]) gives {len(rows)} rows")
            if labelled:
                labels = split.column("label")
                expect(
                    int(labels.min()) >= 0 and int(labels.max()) < loaded.num_classes,
                    f"{split_name} labels lie outside 0..{loaded.num_classes - 1}",
                )
        if labelled:
            expect(
                len(loaded.class_names) == loaded.num_classes,
                f"{len(loaded.class_names)} class_names for {loaded.num_classes} classes",
            )


# --- the checks of each kind ------------------------------------------------------------------


def _checks(kind: str, *checks: tuple[str, Callable[[str, Any], None]]) -> tuple[Check, ...]:
    every = (
        ("options", _options_check(kind)),
        ("contract", _registry_contract(kind)),
        *checks,
    )
    return tuple(Check(n, (fn.__doc__ or "").strip().split("\n")[0], fn) for n, fn in every)


CHECKS: dict[str, tuple[Check, ...]] = {
    "frontends": _checks("frontends", ("forward", frontend_forward), ("encoder", frontend_encoder)),
    "backbones": _checks("backbones", ("forward", backbone_forward), ("encoder", backbone_encoder)),
    "methods": _checks(
        "methods",
        ("protocol", method_protocol),
        ("train step", method_train_step),
        ("seed", method_seed),
    ),
    "probes": _checks("probes", ("protocol", probe_protocol), ("evaluate", probe_evaluate)),
    "datasets": _checks(
        "datasets", ("protocol", dataset_protocol), ("prepare+load", dataset_round_trip)
    ),
    "stages": _checks("stages"),
    "pipelines": _checks("pipelines"),
}
"""The checks of each registry kind, in the order they run."""
