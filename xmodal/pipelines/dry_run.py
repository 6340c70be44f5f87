"""The dry run at load: every component a run selects runs once on tiny inputs before any stage.

After the config is checked and before ``preprocess`` writes anything, each front end +
backbone pair the stages will build (the teacher's, each student's) runs one forward and
backward pass on the front end's ``example_input(2)``; each selected method one training step
on random features of the encoders' sizes; each selected probe one fit on a tiny random split.
A failure stops the run with one line naming the component, its package and the exception, and
the ``xmodal check`` command that says more; a plugin that crashes on its first batch costs a
second, not a teacher's training.

The checks are those of :mod:`xmodal.testing.checks` (imported on first use), with the run's
options. Passed checks are remembered in ``<run_dir>/.dry-run.json``, keyed by each
component's identity (name, package and version, a digest of its source file) and options, so a
rerun with unchanged components skips them. The global RNGs (torch, numpy, ``random``) are
restored afterwards: a run's numbers do not depend on whether the dry run ran.
``runtime.dry_run=false`` turns it off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmodal.core.cache import write_text_atomic
from xmodal.core.config import to_dict
from xmodal.core.errors import ConfigError
from xmodal.core.identity import component_identity as identity_of
from xmodal.core.identity import package_version
from xmodal.core.lock import RunLock
from xmodal.core.registry import BACKBONES, FRONTENDS, METHODS, PROBES, Registry

if TYPE_CHECKING:
    from xmodal.pipelines.config import RunConfig

CACHE_FILE = ".dry-run.json"
"""The passed checks of a run directory (one key per check)."""

CACHE_VERSION = 1


class DryRunError(ConfigError):
    """A selected component failed its dry run (one line: component, package, exception)."""


@dataclass
class DryCheck:
    """One check of the dry run.

    Attributes:
        kind, name: the component blamed when it fails (registry kind and name).
        what: how the message names it (``backbone 'resnet8' behind front end 'depth'``).
        key: the cache key: identities and options of every component it runs.
        run: raises when the check fails.
    """

    kind: str
    name: str
    what: str
    key: str
    run: Callable[[], None]


# --- identity ---------------------------------------------------------------------------------


def component_identity(registry: Registry[Any], name: str) -> dict[str, str]:
    """Kind, name, providing package, its version and source digest of a component.

    One definition: :func:`xmodal.core.identity.component_identity`, as the cache keys use.
    """
    return {"kind": registry.kind, **identity_of(registry.kind, name)}


def _key(*parts: Any) -> str:
    text = json.dumps(
        [{"xmodal": package_version("xmodal"), "torch": package_version("torch")}, *parts],
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# --- the checks -------------------------------------------------------------------------------


@dataclass
class _Pair:
    key: str  # config key of the encoder (teacher.encoder, distill.encoder...)
    modality: str
    backbone: str
    backbone_options: dict[str, Any]
    frontend_options: dict[str, Any]
    built: bool  # whether the run's stages build it (else only its size is read)


def _pairs(config: RunConfig, stages: Sequence[str]) -> list[_Pair]:
    from xmodal.pipelines.name_checks import _chosen_encoders, reads

    builds = {"teacher.encoder": reads(stages, "teacher") and not config.teacher.checkpoint}
    pairs = []
    for key, modality, encoder in _chosen_encoders(config):
        options = config.frontends.options_for(modality)
        pairs.append(
            _Pair(
                key,
                modality,
                encoder.name,
                encoder.options_dict(),
                to_dict(options) if options is not None else {},
                builds.get(key, reads(stages, "distill")),
            )
        )
    return pairs


def _build(pair: _Pair) -> Any:
    from xmodal.encoders.base import create_encoder

    return create_encoder(
        pair.backbone, pair.modality, pair.frontend_options, **pair.backbone_options
    )


def _encoder_check(pair: _Pair) -> Callable[[], None]:
    def run() -> None:
        from xmodal.testing.checks import encoder_step

        encoder = _build(pair).train()
        example = encoder.frontend.example_input(2)
        encoder_step(encoder, example, f"'{pair.modality}' + '{pair.backbone}'")

    return run


def _method_check(
    method: str, options: Any, student_dim: int, teacher_dim: int
) -> Callable[[], None]:
    def run() -> None:
        from xmodal.testing.checks import BATCH, CLASSES, method_context, objective_step

        context = dataclasses.replace(
            method_context(), student_dim=student_dim, teacher_dim=teacher_dim
        )
        import torch

        g = torch.Generator().manual_seed(7)  # private: the global RNG is left alone
        batch = (
            torch.randn(BATCH, student_dim, generator=g),
            torch.randn(BATCH, teacher_dim, generator=g),
            torch.arange(BATCH) % CLASSES,
            torch.arange(BATCH),
        )
        objective_step(METHODS.get(method), context, options, batch)

    return run


def _probe_check(probe: str, options: Any) -> Callable[[], None]:
    def run() -> None:
        from xmodal.testing.checks import probe_fits

        entry = PROBES.get(probe)
        probe_fits(entry, entry(options), 1)

    return run


def plan(config: RunConfig, stages: Sequence[str]) -> list[DryCheck]:
    """The checks a run of ``stages`` needs: its encoders, then its methods, then its probes."""
    from xmodal.pipelines.name_checks import reads
    from xmodal.testing.checks import STUDENT_DIM, TEACHER_DIM

    checks: list[DryCheck] = []
    pairs = _pairs(config, stages)
    for pair in pairs:
        if not pair.built:
            continue
        ids = [
            component_identity(FRONTENDS, pair.modality),
            component_identity(BACKBONES, pair.backbone),
        ]
        checks.append(
            DryCheck(
                "backbones",
                pair.backbone,
                f"backbone '{pair.backbone}' behind front end '{pair.modality}' ({pair.key})",
                _key("encoder", ids, pair.backbone_options, pair.frontend_options),
                _encoder_check(pair),
            )
        )
    if reads(stages, "distill"):
        student_dims = sorted({_embed_dim(p, STUDENT_DIM) for p in pairs[1:]})
        teacher_dim = _embed_dim(pairs[0], TEACHER_DIM) if pairs[0].built else TEACHER_DIM
        for method in config.distill.methods:
            entry = METHODS.get(method)
            if not entry.trains:
                continue
            options = config.distill.options_for(method)
            for student_dim in student_dims:
                checks.append(
                    DryCheck(
                        "methods",
                        method,
                        f"method '{method}'",
                        _key(
                            "method",
                            component_identity(METHODS, method),
                            to_dict(options) if options is not None else None,
                            student_dim,
                            teacher_dim,
                        ),
                        _method_check(method, options, student_dim, teacher_dim),
                    )
                )
    if reads(stages, "probe"):
        for probe in config.probe.probes:
            options = config.probe.options_for(probe)
            checks.append(
                DryCheck(
                    "probes",
                    probe,
                    f"probe '{probe}'",
                    _key(
                        "probe",
                        component_identity(PROBES, probe),
                        to_dict(options) if options is not None else None,
                    ),
                    _probe_check(probe, options),
                )
            )
    return checks


def _embed_dim(pair: _Pair, fallback: int) -> int:
    """The embedding size of ``pair``; ``fallback`` when it cannot be built (its check says why)."""
    try:
        return int(_build(pair).embed_dim)
    except Exception:  # reported by the pair's own check, which runs first
        return fallback


# --- running ----------------------------------------------------------------------------------


@contextlib.contextmanager
def kept_rng_state() -> Iterator[None]:
    """Restore the torch, numpy and ``random`` global RNG states on exit."""
    import numpy as np
    import torch

    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def _read_cache(path: Path) -> set[str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return set()
    return {k for k in data.get("passed", []) if isinstance(k, str)}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def dry_run(config: RunConfig, stages: Sequence[str], run_dir: Path | None) -> list[str]:
    """Run the checks of :func:`plan` not yet passed in ``run_dir``; the kinds:names run.

    Raises:
        DryRunError: the first check that fails, as one line naming the component, its
            package, the exception and ``xmodal check KIND:NAME``.
    """
    if not config.runtime.dry_run:
        return []
    cache = run_dir / CACHE_FILE if run_dir is not None else None
    passed = _read_cache(cache) if cache is not None else set()
    ran: list[str] = []
    with kept_rng_state():
        import torch

        torch.manual_seed(0)  # weights of the throwaway encoders: the same on every dry run
        todo = [c for c in plan(config, stages) if c.key not in passed]
        for check in todo:
            try:
                check.run()
            except Exception as exc:  # any failure of a component is reported, as one line
                registry = {"backbones": BACKBONES, "methods": METHODS, "probes": PROBES}
                package = registry[check.kind].package(check.name)
                raise DryRunError(
                    f"dry run: {check.what} from package '{package}' fails: {_one_line(exc)}; "
                    f"run `xmodal check {check.kind}:{check.name}` for details "
                    "(runtime.dry_run=false skips this check)"
                ) from None
            passed.add(check.key)
            ran.append(f"{check.kind}:{check.name}")
    if cache is not None and todo:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with RunLock(cache.parent):  # a run directory another job holds is refused, not written
            write_text_atomic(
                cache, json.dumps({"version": CACHE_VERSION, "passed": sorted(passed)}, indent=1)
            )
    return ran
