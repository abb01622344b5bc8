"""PNG pictures of plane partitions: regions coloured, edges and decision boundary drawn."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402

from reluscope.errors import InputError  # noqa: E402
from reluscope.io import atomic_write  # noqa: E402


def save_figure(fig, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (temporary name, then rename)."""
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


def plot_plane(
    partition,
    path: str | os.PathLike,
    points=None,
    labels=None,
    color_by: str = "random",
    edges: bool = True,
    boundary: bool = True,
    title: str | None = None,
    seed: int = 0,
    size: float = 6.0,
) -> Path:
    """Draw ``partition`` to a PNG at ``path``.

    ``color_by`` is "random" (one random colour per region) or "output" (the first output at the
    region's interior point). ``points`` are plane coordinates (m, 2) drawn on top, coloured by
    ``labels`` when given.
    """
    if color_by not in ("random", "output"):
        raise InputError(f"color_by must be 'random' or 'output', got {color_by!r}")
    polys = partition.polygon_list()
    fig, ax = plt.subplots(figsize=(size, size))
    if color_by == "random":
        rng = np.random.default_rng(seed)
        colors = rng.uniform(0.35, 0.95, size=(len(polys), 3))
    else:
        inside = partition.to_input(partition.interior_points)
        value = partition.net(inside).reshape(len(polys), -1)[:, 0]
        colors = plt.get_cmap("coolwarm")(_normalise(value.cpu().numpy()))
    ax.add_collection(
        PolyCollection(
            polys,
            facecolors=colors,
            edgecolors="black" if edges else "none",
            linewidths=0.2 if edges else 0.0,
        )
    )
    if boundary:
        segs, _ = partition.decision_boundary()
        if len(segs):
            ax.add_collection(LineCollection(segs.cpu().numpy(), colors="crimson", linewidths=1.6))
    if points is not None:
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        style = {"s": 18, "edgecolors": "white", "linewidths": 0.6, "zorder": 3}
        if labels is None:
            ax.scatter(pts[:, 0], pts[:, 1], color="black", **style)
        else:
            ax.scatter(pts[:, 0], pts[:, 1], c=np.asarray(labels), cmap="tab10", **style)
    s0, s1, t0, t1 = partition.extent
    ax.set_xlim(s0, s1)
    ax.set_ylim(t0, t1)
    ax.set_aspect("equal")
    ax.set_xlabel("s")
    ax.set_ylabel("t")
    ax.set_title(title or f"{partition.num_regions} linear regions")
    fig.tight_layout()
    return save_figure(fig, path)


def _normalise(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    m = max(abs(lo), abs(hi), 1e-300)
    return 0.5 + 0.5 * values / m


def plot_line(partition, path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw every output of ``partition`` (a LinePartition) against tau, breakpoints marked."""
    tau = partition.breakpoints.cpu().numpy()
    out = partition.outputs.cpu().numpy()
    fig, ax = plt.subplots(figsize=(7.0, 3.5))
    for k in range(out.shape[1]):
        ax.plot(tau, out[:, k], lw=1.2, label=f"output {k}" if out.shape[1] > 1 else None)
    for t in tau[1:-1]:
        ax.axvline(t, color="0.8", lw=0.4, zorder=0)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("tau (start = 0, end = 1)")
    ax.set_ylabel("network output")
    ax.set_title(title or f"{partition.num_pieces} linear pieces")
    if out.shape[1] > 1:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)
