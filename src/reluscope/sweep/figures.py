"""One figure per swept key of a sweep: its key numbers (mean ± std over seeds) against the
key's values, one line per combination of the other swept keys.

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from reluscope.figures import figure_style, new_figure, save_png
from reluscope.sweep.result import SweepResult

#: How many key numbers a sweep figure shows (the first ones of the experiment).
SHOWN = 6


def _numeric(values: pd.Series) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def sweep_figures(result: SweepResult) -> list[Path]:
    """Write ``sweep_KEY.png`` into the sweep directory for every swept key with numeric
    values (at least two); returns the files written."""
    summary = result.summary()
    numbers = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]
    numbers = [n for n in numbers if n not in result.grid_keys][:SHOWN]
    written = []
    for key in result.grid_keys:
        if summary[key].nunique() < 2 or not _numeric(summary[key]) or not numbers:
            continue
        others = [k for k in result.grid_keys if k != key]
        ncols = min(3, len(numbers))
        nrows = math.ceil(len(numbers) / ncols)
        with figure_style():
            fig, axes = new_figure(ncols, nrows, size=(3.0, 2.6))
            groups = summary.groupby(others, sort=False) if others else [((), summary)]
            for values, group in groups:
                values = values if isinstance(values, tuple) else (values,)
                label = ", ".join(f"{k}={v}" for k, v in zip(others, values, strict=True))
                group = group.sort_values(key)
                for ax, name in zip(axes, numbers, strict=False):
                    ax.errorbar(
                        group[key],
                        group[f"{name}_mean"],
                        yerr=group[f"{name}_std"].fillna(0),
                        marker="o",
                        capsize=3,
                        label=label or None,
                    )
            for ax, name in zip(axes, numbers, strict=False):
                ax.set_title(name, fontsize=9)
                ax.set_xlabel(key)
                if (summary[key] > 0).all() and summary[key].max() / summary[key].min() >= 20:
                    ax.set_xscale("log")
            for ax in axes[len(numbers) :]:
                ax.set_visible(False)
            if others:
                handles, labels = axes[0].get_legend_handles_labels()
                fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)))
            fig.suptitle(f"{result.name}: key numbers against {key} (mean ± std over seeds)")
            written.append(save_png(fig, result.directory / f"sweep_{key}.png"))
    return written
