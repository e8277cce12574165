"""Figures from plain records (matplotlib, Agg backend: no display needed): learning curves, drift curves
and prequential stream curves.

All take plain data, not run directories: the application (osttp.experiment) and the library's users
(osttp.hardware.plot_drift is `plot_drift` here) call the same functions.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from osttp.errors import OsttpError

History = Sequence[Mapping[str, Any]]  # per-epoch records: {"epoch", "train": {metrics}, "valid": {metrics}}
DriftRows = Sequence[Mapping[str, Any]]  # osttp.hardware.evaluate_drift rows: {"t_s", "compensation", **metrics}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def mean_std_by_epoch(histories: Sequence[History], part: str, key: str) -> tuple[list[int], list[float], list[float]]:
    """Per epoch: mean and (population) std over the runs that reached it and have a finite value."""
    by_epoch: dict[int, list[float]] = {}
    for h in histories:
        for rec in h:
            v = (rec.get(part) or {}).get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                by_epoch.setdefault(int(rec["epoch"]), []).append(float(v))
    epochs = sorted(by_epoch)
    means, stds = [], []
    for e in epochs:
        vals = by_epoch[e]
        m = sum(vals) / len(vals)
        means.append(m)
        stds.append(math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals)))
    return epochs, means, stds


def learning_curves(groups: Mapping[str, Sequence[History]], metric_name: str, path: str | Path, *,
                    title: str = "", chance: float | None = None) -> Path:
    """One line per group (a rule): valid metric (left) and train/valid loss (right) against epoch,
    mean over its runs with a ± std band. Writes a PNG and returns its path."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (ax_m, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, histories) in enumerate(groups.items()):
        c = colors[i % len(colors)]
        n = len(histories)
        for ax, part, key, style, lab in ((ax_m, "valid", metric_name, "-", f"{label} (n={n})"),
                                          (ax_l, "train", "loss", "-", f"{label} train"),
                                          (ax_l, "valid", "loss", "--", f"{label} valid")):
            ep, mean, std = mean_std_by_epoch(histories, part, key)
            if not ep:
                continue
            ax.plot(ep, mean, style, color=c, marker="o", markersize=3, label=lab)
            if n > 1 and style == "-":  # bands for the solid lines only: readable with several rules
                ax.fill_between(ep, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                color=c, alpha=0.2, linewidth=0)
    if chance is not None and math.isfinite(chance):
        ax_m.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax_m.set_xlabel("epoch")
    ax_m.set_ylabel(f"valid {metric_name}")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("loss per supervised step")
    for ax in (ax_m, ax_l):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def drift_metric(rows: DriftRows, preferred: str | None = None) -> str:
    """The metric a drift curve shows: `preferred` when the rows have it, else "accuracy", else the
    first numeric metric of the rows."""
    first = rows[0]
    for name in (preferred, "accuracy"):
        if name is not None and name in first:
            return name
    return next(k for k, v in first.items() if k not in ("t_s", "compensation") and isinstance(v, float))


def plot_drift(rows: DriftRows, path: str | Path, metric: str | None = None,
               reference: Mapping[str, float] | None = None, title: str | None = None) -> str:
    """Plot `osttp.hardware.evaluate_drift` rows (metric against log time, one line per compensation
    setting) to `path` (PNG). metric None: see `drift_metric`. reference: label -> value drawn as
    horizontal lines (e.g. {"float": 0.93}). Returns path."""
    if not rows:
        raise OsttpError("plot_drift: no rows")
    metric = drift_metric(rows, metric)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for comp, style in ((False, "o-"), (True, "s--")):
        sel = [r for r in rows if r["compensation"] is comp]
        if sel:
            ax.plot([r["t_s"] for r in sel], [r[metric] for r in sel], style,
                    label="global drift compensation" if comp else "no compensation")
    for i, (label, value) in enumerate((reference or {}).items()):
        ax.axhline(value, color=f"C{i + 2}", linestyle=":", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("time after programming (s)")
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def plot_stream(curves: Mapping[str, Sequence[Mapping[str, Any]]], metric_name: str, path: str | Path, *,
                drift_steps: Sequence[int] = (), title: str = "") -> Path:
    """Prequential curves (osttp.streams records: "step", "window_<metric>", "cumulative_<metric>"),
    one colour per label: the windowed metric solid, the cumulative one dotted; drift points as
    vertical lines. Writes a PNG and returns its path."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10.5, 4.2))
    for i, (label, records) in enumerate(curves.items()):
        c = f"C{i % 10}"
        for key, style, lab in ((f"window_{metric_name}", "-", label), (f"cumulative_{metric_name}", ":", None)):
            pts = [(r["step"], r[key]) for r in records
                   if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=c, linewidth=1.2, label=lab)
    for j, d in enumerate(drift_steps):
        ax.axvline(d, color="grey", linestyle="--", linewidth=0.8, label="drift point" if j == 0 else None)
    ax.set_xlabel("step (per lane)")
    ax.set_ylabel(f"prequential {metric_name}")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # outside the axes: the curves fill the whole plot
        ax.legend(fontsize=8, title="solid: sliding window\ndotted: cumulative", title_fontsize=8,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
