"""The run report's figures, drawn with matplotlib into PNG files.

Each function takes plain data (summary rows, training histories, 2-D points, a plan matrix),
writes one PNG and returns the saved ``Figure`` (for tests); none reads a run directory (that
is :mod:`xmodal.evaluation.report`). Figures are built on ``matplotlib.figure.Figure`` directly,
not ``pyplot``: no global state, no GUI backend, safe to call from any process.

A PNG is written whole or not at all (a temporary file renamed when complete), after a check
that its folder's filesystem has room for it uncompressed: a full disk is one
:class:`~xmodal.core.errors.OutputError` line naming the PNG, never half a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xmodal.core.cache import atomic_output
from xmodal.training.spread import COSINE_KEY, RANK_KEY

#: per-epoch history keys that are not loss terms
_NOT_LOSSES = ("epoch", "lr", "accuracy", RANK_KEY, COSINE_KEY)
_DPI = 110


def metric_label(metric: str) -> str:
    """A metric's label for axes and tables: ``"s2t_recall@1"`` -> ``"s→t R@1"``.

    Other underscores become spaces: ``"mean_class_accuracy"`` -> ``"mean class accuracy"``.
    """
    direction, _, rest = metric.partition("_")
    if direction in ("s2t", "t2s"):
        arrow = "s→t" if direction == "s2t" else "t→s"
        rest = rest.replace("recall@", "R@").replace("median_rank", "median rank")
        return f"{arrow} {rest}"
    return metric.replace("_", " ")


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _panels(count: int, columns: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """A figure with ``count`` panels in rows of ``columns`` (each ``width`` x ``height`` in)."""
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    fig = _figure(width * columns, height * rows)
    return fig, list(np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel())


def _finish(fig: Any, axes: list[Any], used: int, title: str, path: Path) -> Any:
    """Hide unused panels, add the title, save; returns the figure."""
    for ax in axes[used:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    save_png(fig, path)
    return fig


def png_bytes(fig: Any) -> int:
    """An upper bound on the size of ``fig``'s PNG: its pixels as raw RGBA, plus 64 kB."""
    width, height = fig.get_size_inches() * fig.dpi
    return int(width * height * 4) + (64 << 10)


def save_png(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as a PNG, whole or not at all; returns ``path``.

    Raises:
        OutputError: the filesystem has less than :func:`png_bytes` free, or it filled up
            (or is read-only) while writing; the message names ``path``.
    """
    path = Path(path)
    with atomic_output(path, needed=png_bytes(fig)) as tmp:
        fig.savefig(tmp, format="png")
    return path


def probe_results_figure(
    summary: list[dict[str, Any]], headline: dict[str, str], path: Path, title: str = ""
) -> Any:
    """Draw one panel per probe: its ``headline[probe]`` metric per modality and method.

    Modalities are groups, methods bars (one colour each): the mean over seeds, with the
    standard deviation as error bars.
    """
    probes = list(headline)
    fig, axes = _panels(len(probes), 2, 6.0, 3.6)
    methods = list(dict.fromkeys(e["method"] for e in summary))
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for ax, probe in zip(axes, probes, strict=False):  # spare panels hidden later
        metric = headline[probe]
        entries = [e for e in summary if e["probe"] == probe and e["metric"] == metric]
        percent = not metric.endswith("median_rank")
        scale = 100.0 if percent else 1.0
        modalities = list(dict.fromkeys(e["modality"] for e in entries))
        x = 0.0
        ticks = []
        for modality in modalities:
            group = [e for e in entries if e["modality"] == modality]
            start = x
            for e in group:
                ax.bar(
                    x,
                    scale * e["mean"],
                    0.8,
                    yerr=scale * e["std"] if e["n"] > 1 else None,
                    color=colours[e["method"]],
                    capsize=3,
                    label=e["method"],
                )
                x += 1
            ticks.append(((start + x - 1) / 2, modality))
            x += 0.8
        ax.set_xticks([t for t, _ in ticks], [m for _, m in ticks])
        ax.set_ylabel(f"test {metric_label(metric)}" + (" (%)" if percent else ""))
        ax.set_title(f"{probe} probe")
        if percent:
            ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    handles = {m: h for ax in axes for h, m in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", title="method")
    return _finish(fig, axes, len(probes), title, path)


def training_curves_figure(
    histories: dict[str, list[dict[str, float]]], path: Path, title: str = ""
) -> Any:
    """Draw one panel per trained encoder (``{panel title: per-epoch history}``).

    Each loss term (solid, left axis) and the learning rate (dashed grey, right axis) against
    the epoch.
    """
    from matplotlib.ticker import MaxNLocator

    names = [n for n, h in histories.items() if h]
    fig, axes = _panels(len(names), 3, 4.2, 3.0)
    for ax, name in zip(axes, names, strict=False):  # spare panels hidden later
        history = histories[name]
        epochs = [h["epoch"] for h in history]
        terms = [
            k
            for k in history[0]
            if k not in _NOT_LOSSES and any(abs(h.get(k, 0.0)) > 0 for h in history)
        ]  # skip always-zero terms
        for i, key in enumerate(terms):
            ax.plot(
                epochs, [h.get(key, np.nan) for h in history], marker=".", color=f"C{i}", label=key
            )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss term")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if "lr" in history[0]:
            lr_ax = ax.twinx()
            lr_ax.plot(epochs, [h["lr"] for h in history], ls="--", color="0.5", label="lr")
            lr_ax.set_ylabel("learning rate", color="0.4")
            lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
            lines = ax.get_legend_handles_labels()
            extra = lr_ax.get_legend_handles_labels()
            ax.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=8, loc="upper right")
    return _finish(fig, axes, len(names), title, path)


def spread_curves_figure(
    histories: dict[str, list[dict[str, float]]], path: Path, title: str = ""
) -> Any:
    """Draw the spread of each encoder's probe-batch features against the epoch.

    Two panels, a line per encoder (``{name: per-epoch history}``): the effective rank and the
    mean pairwise cosine (history keys ``spread_rank``, ``spread_cosine``; see
    :mod:`xmodal.training.spread`). Histories without them (older runs) are left out.
    """
    from matplotlib.ticker import MaxNLocator

    names = [n for n, h in histories.items() if any(RANK_KEY in e for e in h)]
    fig, axes = _panels(2, 2, 4.6, 3.2)
    for ax, key, label in (
        (axes[0], RANK_KEY, "effective rank"),
        (axes[1], COSINE_KEY, "mean pairwise cosine"),
    ):
        for i, name in enumerate(names):
            history = [e for e in histories[name] if key in e]
            ax.plot(
                [e["epoch"] for e in history],
                [e[key] for e in history],
                marker=".",
                color=f"C{i % 10}",
                label=name,
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    last = max((e["epoch"] for n in names for e in histories[n]), default=1)
    for ax in axes[:2]:
        ax.set_xlim(0.5, last + 0.5)  # whole-epoch ticks, also for a single epoch
    axes[0].set_ylim(bottom=0)
    axes[1].set_ylim(-0.05, 1.05)  # |Σ unit rows|² >= 0 keeps the mean above -1/(N-1)
    if names:
        fig.legend(
            *axes[0].get_legend_handles_labels(),
            loc="outside right upper",
            fontsize=8,
            title="encoder",
        )
    return _finish(fig, axes, 2, title, path)


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``[N, D]`` onto its first two principal components.

    Returns:
        ``([N, 2] points, [2] explained variance ratio)``; signs fixed so that the largest
        loading of each component is positive.
    """
    x = features.astype(np.float64) - features.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:2] * np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(1)])[:, None]
    variance = s**2
    return x @ vt.T, variance[:2] / max(variance.sum(), 1e-300)


def embeddings_figure(
    panels: list[dict[str, Any]], class_names: list[str], path: Path, title: str = ""
) -> Any:
    """Draw scatter plots of 2-D points coloured by class, a panel per encoder.

    Each panel is ``{"title", "points" [N, 2], "labels" [N], "explained" [2]}`` (one
    encoder's own PCA).
    """
    fig, axes = _panels(len(panels), 4, 3.3, 3.1)
    cmap = "tab10" if len(class_names) <= 10 else "tab20"
    for ax, panel in zip(axes, panels, strict=False):  # spare panels hidden later
        points, labels = np.asarray(panel["points"]), np.asarray(panel["labels"])
        ax.scatter(
            points[:, 0],
            points[:, 1],
            c=labels,
            cmap=cmap,
            vmin=-0.5,
            vmax=(10 if len(class_names) <= 10 else 20) - 0.5,
            s=6,
            alpha=0.8,
        )
        pc1, pc2 = (100 * float(v) for v in panel["explained"])
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(f"PC1 ({pc1:.0f}%)", fontsize=8)
        ax.set_ylabel(f"PC2 ({pc2:.0f}%)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    colours = colormaps[cmap]
    handles = [
        Line2D([], [], marker="o", ls="", color=colours(i), label=name)
        for i, name in enumerate(class_names)
    ]
    fig.legend(handles=handles, loc="outside right upper", title="class", fontsize=8)
    return _finish(fig, axes, len(panels), title, path)


def transport_plan_figure(plans: dict[str, np.ndarray], path: Path, title: str = "") -> Any:
    """Draw heat maps of transport plans ``{panel title: [B, B]}``.

    Plans are scaled by ``B`` so that 1 is the mass of a one-to-one matching (rows: teacher
    samples, columns: student samples).
    """
    names = list(plans)
    fig, axes = _panels(len(names), 3, 4.0, 4.0)
    for ax, name in zip(axes, names, strict=False):  # spare panels hidden later
        plan = np.asarray(plans[name], dtype=np.float64) * len(plans[name])
        image = ax.imshow(plan, cmap="viridis", vmin=0.0, interpolation="nearest")
        ax.set_title(
            f"{name}\ndiagonal mass {np.trace(plan) / len(plan):.2f} (uniform {1 / len(plan):.2f})",
            fontsize=9,
        )
        ax.set_xlabel("student sample in batch")
        ax.set_ylabel("teacher sample in batch")
        fig.colorbar(image, ax=ax, shrink=0.8, label="plan x batch size")
    return _finish(fig, axes, len(names), title, path)
