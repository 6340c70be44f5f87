"""A run's ``report.md``: config summary, results tables and figures.

The report is built from the files a run leaves (``config.yaml``, ``summary.json``, each
unit's ``encoder.json``, ``history.json`` and ``transport-plan.npy``, and
``report/embeddings.json``), so it can be rebuilt at any time with ``xmodal report RUN``.
Several runs are compared side by side with :func:`compare_runs`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.core.cache import (
    check_space,
    make_directory,
    output_error,
    temp_path,
    write_text_atomic,
)
from xmodal.core.errors import DataError, OutputError
from xmodal.core.records import write_json_atomic
from xmodal.evaluation import figures
from xmodal.evaluation.figures import metric_label
from xmodal.training.spread import COSINE_KEY, PROBE_SAMPLES, RANK_KEY

REPORT = "report.md"
FIGURES_DIR = "report"
EMBEDDINGS = "embeddings.json"
SPREAD = "spread.json"
HISTORY = "history.json"
TRANSPORT_PLAN = "transport-plan.npy"
_RANK = "median_rank"
_SUMMARY_NAMES = ("modality", "method", "probe", "metric")
__all__ = [
    "compare_runs",
    "markdown_table",
    "metric_label",
    "probe_tables",
    "spread_table",
    "write_embeddings",
    "write_report",
]


# ----------------------------------------------------------------------------- tables


def format_value(entry: dict[str, Any] | None, seeds: int) -> str:
    """``"72.5 ± 1.3"`` (percent) for fractions, ``"12 ± 2"`` for ranks, ``"-"`` when absent."""
    if entry is None:
        return "-"
    scale, digits = (1.0, 0) if entry["metric"].endswith(_RANK) else (100.0, 1)
    text = f"{scale * entry['mean']:.{digits}f}"
    return text + (f" ± {scale * entry['std']:.{digits}f}" if seeds > 1 else "")


def probe_tables(summary: list[dict[str, Any]], seeds: int) -> list[dict[str, Any]]:
    """One table per probe (in run order): ``{"probe", "columns", "rows"}``.

    A row per (modality, method), a cell per metric (recalls and accuracies in %, ranks as
    ranks) and the gap closed on the probe's first (headline) metric.
    """
    index = {(e["modality"], e["method"], e["probe"], e["metric"]): e for e in summary}
    models = list(dict.fromkeys((e["modality"], e["method"]) for e in summary))
    tables = []
    for probe in dict.fromkeys(e["probe"] for e in summary):
        metrics = list(dict.fromkeys(e["metric"] for e in summary if e["probe"] == probe))
        rows = []
        for modality, method in models:
            entries = [index.get((modality, method, probe, metric)) for metric in metrics]
            if all(e is None for e in entries):
                continue
            gap = entries[0].get("gap_closed") if entries[0] else None
            rows.append(
                [
                    modality,
                    method,
                    *(format_value(e, seeds) for e in entries),
                    "-" if gap is None else f"{100 * gap:.0f}%",
                ]
            )
        columns = [
            "modality",
            "method",
            *map(metric_label, metrics),
            f"gap closed ({metric_label(metrics[0])})",
        ]
        tables.append({"probe": probe, "columns": columns, "rows": rows})
    return tables


def markdown_table(columns: list[str], rows: list[list[str]], text_columns: int = 2) -> str:
    """A GitHub-flavoured Markdown table.

    The first ``text_columns`` columns are left-aligned, the rest right-aligned.
    """

    def escape(cell: str) -> str:
        return str(cell).replace("|", "\\|")

    numeric = [i >= text_columns for i in range(len(columns))]
    lines = [
        "| " + " | ".join(map(escape, columns)) + " |",
        "|" + "|".join("---:" if n else ":---" for n in numeric) + "|",
    ]
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    return "\n".join(lines)


def spread_table(units: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of the embedding-spread table.

    A row per (modality, method) in the order of ``units`` (each with its last epoch's
    ``"spread_rank"`` and ``"spread_cosine"``): the mean over seeds (± sample std with several
    seeds).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for unit in units:
        groups.setdefault((unit["modality"], unit["method"]), []).append(unit)

    def cell(values: list[float], digits: int) -> str:
        text = f"{np.mean(values):.{digits}f}"
        return text + (f" ± {np.std(values, ddof=1):.{digits}f}" if len(values) > 1 else "")

    rows = [
        [
            modality,
            method,
            cell([u[RANK_KEY] for u in group], 1),
            cell([u[COSINE_KEY] for u in group], 2),
            str(len(group)),
        ]
        for (modality, method), group in groups.items()
    ]
    return ["modality", "method", "effective rank", "mean cosine", "seeds"], rows


# ----------------------------------------------------------------------------- run files


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """``{"config": dict, "summary": [...]}`` of a finished run, or DataError naming the fix."""
    run_dir = Path(run_dir)
    summary_file = run_dir / "summary.json"
    if not summary_file.is_file():
        raise DataError(
            f"'{run_dir}' holds no summary.json: not a finished xmodal run; run "
            "'xmodal run PIPELINE --out DIR' first"
        )
    summary = _read_json(summary_file, "rerun the run to rewrite it")
    entries = summary.get("summary", []) if isinstance(summary, dict) else None
    if (
        not isinstance(summary, dict)
        or not isinstance(summary.get("config", {}), dict)
        or not isinstance(entries, list)
        or not all(
            isinstance(e, dict)
            and all(isinstance(e.get(k), str) for k in _SUMMARY_NAMES)
            and _is_number(e.get("mean"))
            and _is_number(e.get("std"))
            for e in entries
        )
    ):
        raise DataError(
            f"'{summary_file}' is not an xmodal summary (an object with 'config' and "
            "'summary', a list of rows with modality, method, probe, metric, mean "
            "and std); rerun the run to rewrite it"
        )
    return {"config": summary.get("config", {}), "summary": summary.get("summary", [])}


def _read_json(path: Path, fix: str) -> Any:
    """The JSON in ``path``.

    Raises:
        DataError: naming ``path`` (unreadable, not UTF-8, not JSON) and ``fix``.
    """
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read '{path}' ({exc.strerror}); {fix}") from None
    except UnicodeDecodeError:
        raise DataError(f"'{path}' is not UTF-8 text (a torn or foreign file); {fix}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"'{path}' is not valid JSON ({exc}); {fix}") from None


def trained_units(run_dir: Path) -> list[dict[str, Any]]:
    """Every exported encoder of the run, teachers first, from each unit's ``encoder.json``.

    Each is ``{"directory", "role", "modality", "method", "seed"}``; DataError names an
    ``encoder.json`` that cannot be read.
    """
    units = []
    for meta_path in sorted(run_dir.glob("**/encoder.json")):
        fix = "delete its unit folder and rerun the run to retrain it"
        meta = _read_json(meta_path, fix)
        extra = meta.get("extra", {}) if isinstance(meta, dict) else None
        if not isinstance(extra, dict):
            raise DataError(
                f"'{meta_path}' is not an encoder description (an object whose "
                f"'extra' is an object); {fix}"
            )
        role = extra.get("role", "student")
        units.append(
            {
                "directory": meta_path.parent,
                "role": role,
                "modality": meta.get("modality"),
                "method": "teacher" if role == "teacher" else extra.get("method", "?"),
                "seed": extra.get("seed", 0),
            }
        )
    return sorted(units, key=lambda u: (u["role"] != "teacher", u["seed"]))


def _unit_title(unit: dict[str, Any]) -> str:
    return f"{unit['modality']} {unit['method']} (seed {unit['seed']})"


def _read_history(unit: dict[str, Any]) -> list[dict[str, Any]]:
    """A unit's ``history.json`` (one entry per epoch, numbers by name), ``[]`` where absent.

    DataError names it where it cannot be read or holds something else.
    """
    path = unit["directory"] / HISTORY
    if not path.is_file():
        return []
    fix = "delete it (its curves are left out) or its unit folder (retrains it)"
    history = _read_json(path, fix)
    if not isinstance(history, list) or not all(
        isinstance(entry, dict) and all(_is_number(v) for v in entry.values()) for entry in history
    ):
        raise DataError(f"'{path}' is not a training history (a list of objects of numbers); {fix}")
    return history


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_plan(unit: dict[str, Any]) -> np.ndarray | None:
    """A unit's transport plan ``[B, B]`` (``transport-plan.npy``), None where absent.

    DataError names it where it cannot be read or is not a matrix of finite numbers.
    """
    path = unit["directory"] / TRANSPORT_PLAN
    if not path.is_file():
        return None
    fix = "delete it (its figure is left out) or its unit folder (retrains it)"
    try:
        plan = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # torn, foreign, or pickled objects
        raise DataError(
            f"'{path}' is not a readable .npy array ({exc.__class__.__name__}); {fix}"
        ) from None
    if (
        not isinstance(plan, np.ndarray)
        or plan.ndim != 2
        or plan.size == 0
        or plan.dtype.kind not in "fiu"
        or not np.isfinite(plan).all()
    ):
        raise DataError(
            f"'{path}' is not a transport plan (a matrix of finite numbers, "
            f"got {getattr(plan, 'dtype', '?')} of shape "
            f"{getattr(plan, 'shape', '?')}); {fix}"
        )
    return plan


def _final_spreads(units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each unit whose history's last epoch holds the spread keys, with those values.

    Items are ``{"modality", "method", "role", "seed", "epoch", "spread_rank",
    "spread_cosine"}``; runs from before the spread was logged hold none.
    """
    out = []
    for unit in units:
        history = _read_history(unit)
        last = history[-1] if history and isinstance(history[-1], dict) else {}
        if RANK_KEY in last and COSINE_KEY in last:
            out.append(
                {k: unit[k] for k in ("modality", "method", "role", "seed")}
                | {
                    "epoch": last.get("epoch"),
                    RANK_KEY: last[RANK_KEY],
                    COSINE_KEY: last[COSINE_KEY],
                }
            )
    return out


def write_embeddings(run_dir: Path, panels: list[dict[str, Any]], class_names: list[str]) -> Path:
    """Save 2-D projections of each encoder's test features for the report.

    Each panel ``{"title", "features" [N, D] array, "labels" [N]}`` is reduced by its own PCA
    (encoders' spaces differ).
    """
    out = []
    for panel in panels:
        points, explained = figures.pca_2d(np.asarray(panel["features"]))
        out.append(
            {
                "title": panel["title"],
                "points": np.round(points, 4).tolist(),
                "labels": [int(v) for v in panel["labels"]],
                "explained": [float(v) for v in explained],
            }
        )
    path = run_dir / FIGURES_DIR / EMBEDDINGS
    write_json_atomic(path, {"class_names": list(class_names), "panels": out})
    return path


# ----------------------------------------------------------------------------- report


def _teacher_protocol(teacher: dict[str, Any]) -> str:
    """How the teacher was made, in words (the protocol the students' numbers rest on)."""
    if teacher.get("checkpoint"):
        return f"loaded from `{teacher['checkpoint']}`"
    if teacher.get("task") == "transfer":
        return (
            "**transfer protocol**: trained on a separate set with its own label space "
            "(`teacher.task=transfer`), never on the probe's labels or the distillation images"
        )
    return (
        "trained on the probe's own labels (`teacher.task=probe-labels`: an oracle teacher, "
        "not a transfer protocol)"
    )


def _student_backbones(distill: dict[str, Any]) -> str:
    """The students grouped by backbone: ``"depth, audio / `resnet8`; points / `pointnet`"``.

    A student's backbone is its ``distill.encoders`` entry, else ``distill.encoder``, else the
    front end's default where ``distill.encoder`` cannot take its input.
    """
    from xmodal.core.registry import UnknownNameError
    from xmodal.encoders.base import backbone_for

    configured = distill.get("encoder", {}).get("name")
    groups: dict[str, list[str]] = {}
    for modality in distill.get("students", []):
        name = distill.get("encoders", {}).get(modality, {}).get("name")
        if name is None:
            try:
                name = backbone_for(modality, configured)
            except UnknownNameError:  # a plugin not installed where the report is rebuilt
                name = configured
        groups.setdefault(str(name), []).append(modality)
    return "; ".join(f"{', '.join(group)} / `{name}`" for name, group in groups.items())


def _config_summary(config: dict[str, Any]) -> list[str]:
    data = config.get("data", {})
    options = data.get(data.get("name", "").replace("-", "_"), {})
    teacher, distill = config.get("teacher", {}), config.get("distill", {})
    t_opt, s_opt = teacher.get("optim", {}), distill.get("optim", {})

    def opts(d: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in d.items() if not isinstance(v, dict)) or "defaults"

    return [
        f"- **data**: `{data.get('name')}` ({opts(options)})",
        f"- **teacher**: {teacher.get('modality')} / `{teacher.get('encoder', {}).get('name')}`, "
        f"{t_opt.get('epochs')} epochs, batch {t_opt.get('batch_size')}, lr {t_opt.get('lr')}; "
        f"{_teacher_protocol(teacher)}",
        f"- **students**: {_student_backbones(distill)}, {s_opt.get('epochs')} epochs, "
        f"batch {s_opt.get('batch_size')}, lr {s_opt.get('lr')}",
        f"- **methods**: {', '.join(distill.get('methods', []))}",
        f"- **seeds**: {', '.join(str(s) for s in config.get('seeds', []))}",
        f"- **probes**: {', '.join(config.get('probe', {}).get('probes', []))}",
        "- full config: [`config.yaml`](config.yaml)",
    ]


def write_report(run_dir: str | Path) -> Path:
    """Draw the figures into ``RUN/report/`` and write ``RUN/report.md``; returns its path.

    Every input is read and checked first (DataError naming a file that cannot be used); the
    figures are drawn into a temporary folder that replaces ``RUN/report/`` only when complete,
    so a failure leaves the earlier report and its figures as they were.
    """
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    config, summary = run["config"], run["summary"]
    seeds = max(1, len(config.get("seeds", [0])))
    name = config.get("pipeline", run_dir.name)
    fig_dir = run_dir / FIGURES_DIR
    units = trained_units(run_dir)
    first_seed = min((u["seed"] for u in units), default=0)
    shown = [u for u in units if u["seed"] == first_seed]
    spreads = _final_spreads(units)
    histories = {_unit_title(unit): _read_history(unit) for unit in shown}
    plans = {_unit_title(u): plan for u in shown if (plan := _read_plan(u)) is not None}
    embeddings = _read_embeddings(fig_dir / EMBEDDINGS)
    lines = [
        f"# {name}: run report",
        "",
        f"Run directory: `{run_dir}`.",
        "",
        "## Config",
        "",
        *_config_summary(config),
        "",
        "## Results",
        "",
        "Test metrics over "
        + (f"{seeds} seeds (mean ± sample std)" if seeds > 1 else "1 seed")
        + "; accuracies and recalls in %, ranks as ranks (1 = best). Gap closed: "
        "(method − none) / (supervised − none) on the probe's first metric.",
        "",
    ]
    for table in probe_tables(summary, seeds):
        lines += [f"### {table['probe']}", "", markdown_table(table["columns"], table["rows"]), ""]
    lines += [
        "Per-seed rows: [`results.json`](results.json), [`results.csv`](results.csv); "
        "over seeds: [`summary.csv`](summary.csv).",
        "",
    ]
    build = _new_figures_folder(fig_dir)
    try:
        if spreads:
            write_json_atomic(build / SPREAD, spreads)
            lines += [
                "### Embedding spread",
                "",
                f"Pooled features of the first (up to) {PROBE_SAMPLES} training samples after "
                "the last training epoch: effective rank (exp of the entropy of the normalised "
                "singular values of the centred features; at most min(samples - 1, feature "
                "dimension)) and mean pairwise cosine (0: directions spread around the origin, "
                "1: all in one direction; pooled features after a ReLU are non-negative, so "
                "compare it with the teacher's and the supervised student's, not with 0). A "
                "student far below their rank, or with a cosine well above theirs, has "
                "collapsed, whatever its loss says.",
                "",
                markdown_table(*spread_table(spreads)),
                "",
                f"Per seed: [`{FIGURES_DIR}/{SPREAD}`]({FIGURES_DIR}/{SPREAD}).",
                "",
            ]
        lines += ["## Figures", ""]

        def add(file: str, caption: str) -> None:
            lines.extend([f"![{caption}]({FIGURES_DIR}/{file})", "", f"*{caption}*", ""])

        headline: dict[str, str] = {}
        for e in summary:
            headline.setdefault(e["probe"], e["metric"])
        if headline:
            figures.probe_results_figure(
                summary,
                headline,
                build / "probe-results.png",
                title=f"{name}: probe results on the test split",
            )
            add(
                "probe-results.png",
                "Probe results per modality and method (headline metric of "
                "each probe" + (", error bars: std over seeds)" if seeds > 1 else ", one seed)"),
            )
        if any(histories.values()):
            figures.training_curves_figure(
                histories,
                build / "training-curves.png",
                title="training: loss terms per epoch, learning rate dashed",
            )
            add(
                "training-curves.png",
                "Training curves: each loss term (left axis) and the "
                "learning rate (dashed, right axis) per epoch, per trained encoder",
            )
        if any(RANK_KEY in e for h in histories.values() for e in h):
            figures.spread_curves_figure(
                histories,
                build / "embedding-spread.png",
                title="training: spread of the probe batch's features",
            )
            add(
                "embedding-spread.png",
                f"Embedding spread per epoch: effective rank and mean "
                f"pairwise cosine of each trained encoder's features of the first {PROBE_SAMPLES} "
                "training samples",
            )
        if embeddings is not None:
            figures.embeddings_figure(
                embeddings["panels"],
                embeddings["class_names"],
                build / "embeddings-pca.png",
                title="test embeddings: 2-D PCA of each encoder, coloured by class",
            )
            add(
                "embeddings-pca.png",
                "Test embeddings of the teacher and every student, each "
                "projected on its own first two principal components, coloured by scene class",
            )
        if plans:
            figures.transport_plan_figure(
                plans,
                build / "transport-plan.png",
                title="local OT plan of the last training batch",
            )
            add(
                "transport-plan.png",
                "Transport plan of the last training batch (teacher rows, "
                "student columns, same sample order): mass on the diagonal means each student "
                "embedding is matched to its own teacher embedding",
            )
        _swap_in(build, fig_dir)
    except OutputError as exc:  # name the figures folder, not its temporary twin
        raise OutputError(str(exc).replace(str(build), str(fig_dir))) from None
    finally:
        shutil.rmtree(build, ignore_errors=True)  # gone already when swapped in
    return write_text_atomic(run_dir / REPORT, "\n".join(lines))


def _new_figures_folder(fig_dir: Path) -> Path:
    """A temporary folder beside ``fig_dir`` holding its files but the figures and ``spread.json``.

    Those are drawn again (one whose input went away must not linger). The space the copied
    files need is checked first; a failure is one OutputError line naming ``fig_dir``.
    """
    build = temp_path(fig_dir)
    if not fig_dir.is_dir():
        return make_directory(build)
    top = str(fig_dir)

    def drawn_again(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if folder == top and (n.endswith(".png") or n == SPREAD)]

    kept = sum(
        (Path(folder) / name).stat().st_size
        for folder, _, names in os.walk(fig_dir)
        for name in set(names) - set(drawn_again(folder, names))
    )
    check_space(fig_dir, kept)
    try:
        shutil.copytree(fig_dir, build, ignore=drawn_again)
    except OSError as exc:  # shutil.Error lists (source, target, reason) per file
        shutil.rmtree(build, ignore_errors=True)
        reasons = exc.args[0] if isinstance(exc, shutil.Error) else [("", "", str(exc))]
        if isinstance(exc, shutil.Error) and any("No space" in r[2] for r in reasons):
            exc = OSError(errno.ENOSPC, "No space left on device")
        error = output_error(exc, fig_dir, kept)
        if isinstance(error, OutputError):
            raise error from None
        raise OutputError(
            f"cannot copy '{fig_dir}' beside itself to rebuild the report ({reasons[0][2]}): "
            "check that place, or delete the folder to draw the report afresh"
        ) from None
    return build


def _swap_in(build: Path, fig_dir: Path) -> None:
    """Put the complete ``build`` folder where ``fig_dir`` is (two renames); delete the old one."""
    old = temp_path(fig_dir) if fig_dir.exists() else None
    if old is not None:
        os.replace(fig_dir, old)
    os.replace(build, fig_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _read_embeddings(path: Path) -> dict[str, Any] | None:
    """``report/embeddings.json`` (see :func:`write_embeddings`), None where absent.

    DataError names it where it cannot be read or drawn.
    """
    if not path.is_file():
        return None
    fix = "delete it (its figure is left out) or rerun the run to rewrite it"
    data: dict[str, Any] = _read_json(path, fix)  # checked below to be a dict
    try:
        panels, names = data["panels"], data["class_names"]
        ok = (
            isinstance(panels, list)
            and isinstance(names, list)
            and all(isinstance(n, str) for n in names)
        )
        for panel in panels if ok else ():
            points = np.asarray(panel["points"], dtype=np.float64)
            labels = np.asarray(panel["labels"])
            explained = np.asarray(panel["explained"], dtype=np.float64)
            ok = (
                ok
                and isinstance(panel["title"], str)
                and points.ndim == 2
                and points.shape[1] == 2
                and labels.shape == points.shape[:1]
                and labels.dtype.kind in "iu"
                and explained.shape == (2,)
            )
    except (TypeError, KeyError, ValueError):
        ok = False
    if not ok:
        raise DataError(
            f'\'{path}\' is not a set of embedding panels ("panels": [{{"title", '
            f'"points" [N, 2], "labels" [N], "explained" [2]}}], '
            f'"class_names"); {fix}'
        )
    return data


def compare_runs(run_dirs: list[str | Path]) -> tuple[list[str], list[list[str]]]:
    """A side-by-side table of several runs' results.

    A row per (probe, metric, modality, method) found in any run, a column per run with its
    mean (± std over its seeds); ``"-"`` where a run lacks the row.
    """
    runs = [(Path(d), read_run(d)) for d in run_dirs]
    keys: dict[tuple[str, str, str, str], None] = {}
    indexed = []
    for _, run in runs:
        index = {(e["probe"], e["metric"], e["modality"], e["method"]): e for e in run["summary"]}
        keys.update(dict.fromkeys(index))
        indexed.append((index, max(1, len(run["config"].get("seeds", [0])))))
    names = [d.name or str(d) for d, _ in runs]
    if len(set(names)) < len(names):
        names = [str(d) for d, _ in runs]
    columns = ["probe", "metric", "modality", "method", *names]
    rows = [
        [
            probe,
            metric_label(metric),
            modality,
            method,
            *(
                format_value(index.get((probe, metric, modality, method)), seeds)
                for index, seeds in indexed
            ),
        ]
        for probe, metric, modality, method in keys
    ]
    return columns, rows
