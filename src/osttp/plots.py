"""Learning-curve figures (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

History = Sequence[Mapping[str, Any]]  # metrics.jsonl records: {"epoch", "train": {...}, "valid": {...}}


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
