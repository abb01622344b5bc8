"""Pictures of partitions: a plane partition drawn onto matplotlib axes (regions coloured,
edges and decision boundary drawn), and PNG files of plane and line partitions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection

from reluscope.figures import new_figure, save_png
from reluscope.validation import check_choice, check_number

if TYPE_CHECKING:
    from reluscope.regions.line import LinePartition
    from reluscope.regions.plane import PlanePartition


def draw_plane(
    ax: Axes,
    partition: PlanePartition,
    points=None,
    labels=None,
    color_by: str = "random",
    edge_width: float = 0.2,
    boundary: bool = True,
    seed: int = 0,
    segments: np.ndarray | None = None,
) -> None:
    """Draw ``partition`` onto ``ax`` in plane coordinates (s, t), limited to its extent with
    equal aspect.

    Regions are filled by ``color_by``: "random" (one colour per region, seeded by ``seed``) or
    "output" (the first output at the region's interior point); their edges are black lines
    ``edge_width`` points wide (0: none); ``boundary`` adds the decision boundary in crimson:
    its ``segments`` (m, 2, 2) when given (``partition.decision_boundary()[0]``, which is
    costly to recompute), else computed.
    ``points`` are plane coordinates (m, 2) drawn on top, coloured by ``labels`` when given.
    """
    check_choice("color_by", color_by, ("random", "output"))
    check_number("edge_width", edge_width, minimum=0)
    polys = partition.polygon_list()
    if color_by == "random":
        colors = np.random.default_rng(seed).uniform(0.35, 0.95, size=(len(polys), 3))
    else:
        inside = partition.to_input(partition.interior_points)
        value = partition.net(inside).reshape(len(polys), -1)[:, 0]
        colors = colormaps["coolwarm"](_normalise(value.cpu().numpy()))
    edges = "black" if edge_width > 0 else "none"
    ax.add_collection(
        PolyCollection(polys, facecolors=colors, edgecolors=edges, linewidths=edge_width)
    )
    if boundary:
        if segments is None:
            segments = partition.decision_boundary()[0].cpu().numpy()
        if len(segments):
            ax.add_collection(LineCollection(list(segments), colors="crimson", linewidths=1.6))
    if points is not None:
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        style: dict[str, Any] = {"s": 18, "edgecolors": "white", "linewidths": 0.6, "zorder": 3}
        if labels is None:
            ax.scatter(pts[:, 0], pts[:, 1], color="black", **style)
        else:
            ax.scatter(pts[:, 0], pts[:, 1], c=np.asarray(labels), cmap="tab10", **style)
    s0, s1, t0, t1 = partition.extent
    ax.set_xlim(s0, s1)
    ax.set_ylim(t0, t1)
    ax.set_aspect("equal")


def plot_plane(
    partition: PlanePartition,
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
    """Draw ``partition`` (see :func:`draw_plane`; ``edges`` 0.2 points wide) to a PNG at
    ``path``, ``size`` inches square, titled with its number of regions unless ``title``."""
    fig, (ax,) = new_figure(size=(size, size))
    draw_plane(ax, partition, points, labels, color_by, 0.2 if edges else 0.0, boundary, seed)
    ax.set_xlabel("s")
    ax.set_ylabel("t")
    ax.set_title(title or f"{partition.num_regions} linear regions")
    return save_png(fig, path, dpi=150)


def _normalise(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    m = max(abs(lo), abs(hi), 1e-300)
    return 0.5 + 0.5 * values / m


def plot_line(partition: LinePartition, path: str | os.PathLike, title: str | None = None) -> Path:
    """Draw every output of ``partition`` against tau, breakpoints marked, to a PNG at ``path``."""
    tau = partition.breakpoints.cpu().numpy()
    out = partition.outputs.cpu().numpy()
    fig, (ax,) = new_figure(size=(7.0, 3.5))
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
    return save_png(fig, path, dpi=150)
