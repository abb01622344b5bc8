"""Neural collapse metrics NC1-NC4 (Papyan, Han & Donoho 2020; Zhu et al. 2021; Galanti et al.
2022), per layer, streamed over batches.

Features h of a layer (flattened to p numbers) with labels c in {0..C-1}. N points, n_c of class
c, class means mu_c, global mean mu_G (the mean of all points), centred means
M = [mu_c - mu_G]_c (p x C), Sigma_W = (1/N) sum_i (h_i - mu_{c_i})(h_i - mu_{c_i})^T and
Sigma_B = (1/C) M M^T. Only classes with at least one point count (C = their number, >= 2).

- ``nc1`` = Tr(Sigma_W Sigma_B^+) / C (Moore-Penrose pseudo-inverse). M n = 0 for the counts
  n, so M is used through M Q (Q an orthonormal basis of n's complement, M Q Q^T M^T = M M^T),
  and singular values at most max(p, C) * eps * max(sigma_1, max_c ||mu_c||) count as zero,
  the rounding level of the centred means. ``nc1_trace`` = Tr(Sigma_W) / Tr(Sigma_B).
- ``cdnv``: the class-distance normalised variance (Var_c + Var_c') / (2 ||mu_c - mu_c'||^2),
  averaged over the pairs c < c', with Var_c the mean squared distance of class c to mu_c.
- ``nc2_equinorm`` = std_c ||mu_c - mu_G|| / mean_c ||mu_c - mu_G||; ``nc2_equiangular`` = std of
  the cosines between centred class means over pairs c < c'; ``nc2_maxangle`` = mean over the
  pairs of |cos + 1/(C-1)|; ``nc2_etf`` = || M^T M / ||M^T M||_F - (I - 11^T/C) / sqrt(C-1) ||_F,
  the distance of the normalised Gram matrix to a simplex ETF's. Standard deviations are
  population ones (divided by the count).
- At the penultimate layer, with W (C x p) the rows of the classifier for the present classes:
  ``w_equinorm``, ``w_equiangular``, ``w_maxangle``, ``w_etf``, the same four on the rows of W
  (uncentred, Gram W W^T), and ``nc3`` = || W^T / ||W||_F - M / ||M||_F ||_F (self-duality; not
  squared). The classifier is the affine map from the penultimate features to the output: the
  composition of the trailing Linear layers (a LowRankLinear counts as one).
- ``nc4``: the fraction of points whose nearest class mean (Euclidean, among present classes)
  is not the network's prediction (argmax of the output; output > 0 for a single output);
  ``ncc_error``: the fraction whose nearest class mean is not their label.
- ``means_rank``: the numerical rank of M (same tolerance as nc1; C - 1 for a simplex ETF);
  ``trace_sw`` = Tr(Sigma_W) and ``trace_sb`` = Tr(Sigma_B), in squared feature units.

All ratios are dimensionless. A pair of equal class means gives an infinite ``cdnv`` term; equal
class means everywhere give nc1 = inf (NaN when the features are constant too).

Streaming: per layer, the per-class counts and means, the pooled within-class scatter matrix
(p x p) and the per-class sums of squared deviations are merged batch by batch with Chan's
update in float64, so any split into batches gives the all-at-once statistics (up to rounding).
NC4 needs the final class means for every point: the meter keeps the features (in the network's
dtype, on the CPU) unless ``nc4=False``. Memory per layer: 8 p^2 bytes, plus the features for nc4.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.measures.batches import take_inputs
from reluscope.measures.options import check_chunk, prepare_net
from reluscope.nets.ops import LinearOp, ReshapeOp
from reluscope.nets.pwl import INPUT, PWLNet

NAME = "neural_collapse"
PENULTIMATE = "penultimate"
OUTPUT = "output"
DEFAULT_BATCH_SIZE = 512
_LABEL_KEYS = ("y", "label", "labels", "target", "targets")
_F64 = torch.float64


# ------------------------------------------------------------------------------ statistics
class ClassStatistics:
    """Per-class counts, means and squared deviations, and the pooled within-class scatter
    matrix of p-dimensional features, in float64, merged batch by batch (Chan et al. 1979)."""

    def __init__(self, num_classes: int, dim: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.dim = dim
        self.counts = torch.zeros(num_classes, dtype=_F64, device=device)
        self.means = torch.zeros(num_classes, dim, dtype=_F64, device=device)
        #: sum over points of (h - mu_c)(h - mu_c)^T, pooled over classes (p x p)
        self.scatter = torch.zeros(dim, dim, dtype=_F64, device=device)
        #: per class, the sum over its points of ||h - mu_c||^2
        self.squares = torch.zeros(num_classes, dtype=_F64, device=device)

    def update(self, features: Tensor, labels: Tensor) -> None:
        """Add points ``features`` (n, p) with class indices ``labels`` (n,), both checked."""
        h = features.to(device=self.means.device, dtype=_F64)
        y = labels.to(self.means.device)
        onehot = torch.nn.functional.one_hot(y, self.num_classes).to(_F64)
        nb = onehot.sum(0)
        mb = (onehot.T @ h) / nb.clamp_min(1).unsqueeze(1)
        dev = h - mb[y]
        squares = torch.zeros_like(self.squares).index_add_(0, y, (dev * dev).sum(1))
        n = self.counts + nb
        delta = mb - self.means  # ignored below for classes absent from the batch (nb = 0)
        weight = self.counts * nb / n.clamp_min(1)
        self.means += delta * (nb / n.clamp_min(1)).unsqueeze(1)
        self.scatter += dev.T @ dev + (delta * weight.unsqueeze(1)).T @ delta
        self.squares += squares + weight * (delta * delta).sum(1)
        self.counts = n

    def present(self) -> Tensor:
        """Indices of the classes with at least one point."""
        return torch.nonzero(self.counts > 0).flatten()

    def metrics(self, classifier: Tensor | None = None) -> dict[str, float]:
        """NC1, CDNV, NC2, the rank of the centred means and the traces (module docstring);
        with ``classifier`` (W: one row per class, p columns) also NC3 and NC2 of W."""
        keep = self.present()
        if len(keep) < 2:
            raise InputError(
                "neural collapse needs points of at least two classes; got only class(es) "
                f"{keep.tolist()}"
            )
        counts, mu = self.counts[keep], self.means[keep]
        c, p = len(keep), self.dim
        total = counts.sum()
        centred = (mu - (counts @ mu) / total).T  # M, p x C
        sw = self.scatter / total
        # sum_c n_c (mu_c - mu_G) = 0: M has rank <= C - 1. Project that null direction out
        # exactly (Q: orthonormal basis of counts^perp) so that rounding cannot revive it.
        q = torch.linalg.qr(counts.unsqueeze(1), mode="complete").Q[:, 1:]
        u, s, _ = torch.linalg.svd(centred @ q, full_matrices=False)
        scale = torch.maximum(s.max(), mu.norm(dim=1).max())  # rounding of M is relative to mu
        kept = s > max(p, c) * torch.finfo(_F64).eps * scale
        tr_sw = torch.trace(sw)
        tr_sb = (s * s).sum() / c
        if kept.any():
            uk = u[:, kept]
            nc1 = ((uk.T @ sw @ uk).diagonal() / s[kept] ** 2).sum()
        else:
            nc1 = tr_sw / torch.zeros((), dtype=_F64)  # inf, or NaN when Sigma_W = 0 too
        var = self.squares[keep] / counts
        dist2 = torch.cdist(mu, mu, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        i, j = torch.triu_indices(c, c, 1, device=mu.device)
        out = dict(
            nc1=nc1,
            nc1_trace=tr_sw / tr_sb,
            cdnv=((var[i] + var[j]) / (2 * dist2[i, j])).mean(),
            means_rank=kept.sum().to(_F64),
            trace_sw=tr_sw,
            trace_sb=tr_sb,
        )
        out.update({f"nc2_{k}": v for k, v in simplex_distances(centred.T).items()})
        if classifier is not None:
            w = classifier.to(device=mu.device, dtype=_F64)[keep]
            out.update({f"w_{k}": v for k, v in simplex_distances(w).items()})
            out["nc3"] = torch.linalg.matrix_norm(
                w.T / torch.linalg.matrix_norm(w) - centred / torch.linalg.matrix_norm(centred)
            )
        return {k: float(v) for k, v in out.items()}


def simplex_distances(vectors: Tensor) -> dict[str, Tensor]:
    """How far the rows of ``vectors`` (C x p, C >= 2) are from a simplex ETF: ``equinorm``
    (std / mean of the norms), ``equiangular`` (std of the pairwise cosines), ``maxangle``
    (mean |cos + 1/(C-1)|) and ``etf`` (Frobenius distance of the normalised Gram matrix to
    (I - 11^T/C) / sqrt(C-1)). Population standard deviations; pairs c < c'."""
    c = len(vectors)
    gram = vectors @ vectors.T
    norms = gram.diagonal().sqrt()
    cos = gram / (norms.unsqueeze(0) * norms.unsqueeze(1))
    i, j = torch.triu_indices(c, c, 1, device=vectors.device)
    pairs = cos[i, j]
    eye = torch.eye(c, dtype=vectors.dtype, device=vectors.device)
    etf = (eye - 1.0 / c) / (c - 1) ** 0.5
    return dict(
        equinorm=norms.std(correction=0) / norms.mean(),
        equiangular=pairs.std(correction=0),
        maxangle=(pairs + 1.0 / (c - 1)).abs().mean(),
        etf=torch.linalg.matrix_norm(gram / torch.linalg.matrix_norm(gram) - etf),
    )


def nearest_means(features: Tensor, means: Tensor, classes: Tensor) -> Tensor:
    """For each row of ``features``, the entry of ``classes`` whose row of ``means`` is
    nearest (Euclidean; the first on ties), computed in float64."""
    d = torch.cdist(features.to(_F64), means.to(_F64), compute_mode="donot_use_mm_for_euclid_dist")
    return classes[d.argmin(dim=1)]


# ------------------------------------------------------------------------------ layers
@dataclass(frozen=True)
class Classifier:
    """The affine map out = features @ weight.T + bias from the penultimate features (the
    output of node ``node``, flattened) to the network's output."""

    node: str
    weight: Tensor
    bias: Tensor | None


def find_classifier(net: PWLNet) -> Classifier | None:
    """The trailing chain of Linear layers (and reshapes) before the output, composed in
    float64; None when the output is not produced by a Linear layer on flat features."""
    a = c = None
    name = net.output
    while name != INPUT:
        node = net.node(name)
        source = node.inputs[0] if len(node.inputs) == 1 else None
        src_shape = net.input_shape if source == INPUT else None
        if source is not None and source != INPUT:
            src_shape = net.node(source).shape
        if (
            isinstance(node.op, LinearOp)
            and len(node.shape) == 1
            and src_shape is not None
            and len(src_shape) == 1
        ):
            w = node.op.weight.detach().to(_F64)
            b = None if node.op.bias is None else node.op.bias.detach().to(_F64)
            if a is None:
                a, c = w, b
            else:
                c = c if b is None else (a @ b if c is None else c + a @ b)
                a = a @ w
        elif not (isinstance(node.op, ReshapeOp) and a is not None):
            break
        if source is None:
            break
        name = source
    return None if a is None else Classifier(name, a, c)


def resolve_layers(
    net: PWLNet, layers: Iterable[str] | str | None, classifier: Classifier | None
) -> dict[str, str]:
    """Map each requested layer name to the node whose output is its features.

    Names: the network's sites (post-activation), "penultimate" (the input of the trailing
    Linear layers, when the output is made by one) and "output". Default: every site, then
    "penultimate" unless it is a site, then "output".
    """
    nodes = {s.name: s.name for s in net.sites}
    if classifier is not None:
        nodes[PENULTIMATE] = classifier.node
    nodes[OUTPUT] = net.output
    if layers is None:
        sites = {s.name for s in net.sites}
        return {
            k: v
            for k, v in nodes.items()
            if not (k == PENULTIMATE and classifier is not None and classifier.node in sites)
        }
    wanted = [layers] if isinstance(layers, str) else list(layers)
    unknown = [w for w in wanted if w not in nodes]
    if unknown:
        detail = "" if classifier else " (no 'penultimate': the output is not made by a Linear)"
        raise InputError(
            f"unknown layer(s) {unknown}; expected the network's sites "
            f"{[s.name for s in net.sites]}, {PENULTIMATE!r} or {OUTPUT!r}{detail}"
        )
    if not wanted:
        raise InputError(f"layers is empty; expected some of {list(nodes)}")
    return {w: nodes[w] for w in wanted}


# ------------------------------------------------------------------------------ labels
def take_labels(batch, label_key: str | int | None = None):
    """The labels of a batch: element ``label_key`` (default 1) of a tuple/list, or key
    ``label_key`` (default "y", "label", "labels", "target" or "targets") of a dict."""
    if isinstance(batch, (tuple, list)):
        key = 1 if label_key is None else label_key
        if not isinstance(key, int) or not -len(batch) <= key < len(batch):
            raise InputError(
                f"batches are tuples of length {len(batch)}; label_key={key!r} must be an index "
                "of the labels (default 1: (inputs, labels))"
            )
        return batch[key]
    if isinstance(batch, Mapping):
        keys = [label_key] if label_key is not None else list(_LABEL_KEYS)
        for key in keys:
            if key in batch:
                return batch[key]
        raise InputError(
            f"batches are dicts with keys {sorted(map(str, batch))}; pass label_key= naming the "
            "labels"
        )
    raise InputError(
        "labels are needed: pass update(x, y), or batches that are (inputs, labels) tuples or "
        f"dicts; got a batch of type {type(batch).__name__} alone"
    )


def check_labels(labels, n: int, num_classes: int) -> Tensor:
    """``labels`` as a 1-D int64 tensor of length ``n`` with values in [0, num_classes), or an
    InputError saying what is wrong."""
    y = torch.as_tensor(labels)
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise InputError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.dim() != 1 or len(y) != n:
        raise InputError(
            f"labels of shape {tuple(y.shape)} do not fit {n} input points: expected shape ({n},)"
        )
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise InputError(
            f"labels must lie in [0, {num_classes}) (the network has {num_classes} classes), "
            f"got values from {int(y.min())} to {int(y.max())}"
        )
    return y.long()


# ------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class NeuralCollapseResult:
    """NC metrics of one model on one labelled data set.

    ``values[layer][metric]`` (names in the module docstring); ``penultimate`` is the layer
    that carries NC3 and the classifier's NC2 (None when no requested layer does);
    ``class_counts`` the number of points of each present class; ``params`` the options.
    """

    values: dict[str, dict[str, float]]
    num_points: int
    class_counts: dict[int, int]
    penultimate: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(self.values)

    def value(self, metric: str, layer: str | None = None) -> float:
        """One metric at ``layer`` (default: the penultimate layer)."""
        layer = self.penultimate if layer is None else layer
        if layer not in self.values:
            raise InputError(f"no layer {layer!r} in the result; layers are {self.layers}")
        if metric not in self.values[layer]:
            raise InputError(
                f"no metric {metric!r} at layer {layer!r}; it has {list(self.values[layer])}"
            )
        return self.values[layer][metric]

    def to_records(self, **tags: Any) -> list[dict[str, Any]]:
        """Tidy rows (metric, layer, value, stderr=None, plus ``tags``), one per metric and layer."""
        return [
            dict(tags, metric=metric, layer=layer, value=value, stderr=None)
            for layer, metrics in self.values.items()
            for metric, value in metrics.items()
        ]

    def to_frame(self, **tags: Any):
        """The records as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.to_records(**tags))


# ------------------------------------------------------------------------------ meter
class NeuralCollapseMeter:
    """Streaming neural collapse metrics: ``update(x, y)`` (or ``update(batch)`` with
    (inputs, labels) tuples or dicts) for each batch, then ``compute()``; ``reset()`` starts
    over. See :func:`neural_collapse` for the arguments.

    The model is traced once, at construction, and cast to ``dtype`` when given: the meter
    measures a snapshot of its weights (build a new meter after training steps).
    """

    def __init__(
        self,
        model: nn.Module | PWLNet,
        layers: Iterable[str] | str | None = None,
        *,
        nc4: bool = True,
        batch_size: int | None = None,
        input_shape: Sequence[int] | None = None,
        input_key: str | int | None = None,
        label_key: str | int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.net = prepare_net(model, input_shape, dtype)
        self.classifier = find_classifier(self.net)
        self.layers = resolve_layers(self.net, layers, self.classifier)
        if not isinstance(nc4, bool):
            raise InputError(f"nc4 must be True or False, got {nc4!r}")
        self.nc4 = nc4
        self.batch_size = check_chunk(batch_size, "batch_size") or DEFAULT_BATCH_SIZE
        self.input_key = input_key
        self.label_key = label_key
        self.num_classes = max(self.net.output_dim, 2)
        self.reset()

    def reset(self) -> None:
        """Forget every point added so far."""
        self.stats: dict[str, ClassStatistics] = {}
        self._features: dict[str, list[Tensor]] = {k: [] for k in self.layers}
        self._labels: list[Tensor] = []
        self._predictions: list[Tensor] = []

    def update(self, x, y=None) -> None:
        """Add a batch: inputs ``x`` with labels ``y``, or with ``y`` None a batch holding both
        (a tuple/list (inputs, labels) or a dict; see ``input_key`` and ``label_key``)."""
        if y is None:
            x, y = take_inputs(x, self.input_key), take_labels(x, self.label_key)
        x = torch.as_tensor(x)
        y = check_labels(y, len(x), self.num_classes)
        for i in range(0, len(x), self.batch_size):
            self._accumulate(
                self.net.check_input(x[i : i + self.batch_size]), y[i : i + self.batch_size]
            )

    def update_from(self, data, labels=None) -> NeuralCollapseMeter:
        """Add every point of ``data``: a tensor of inputs with ``labels``, or an iterable of
        batches (a DataLoader of (inputs, labels) tuples or dicts) with ``labels`` None."""
        if isinstance(data, Tensor) or hasattr(data, "__array__"):
            if labels is None:
                raise InputError("labels are needed with a tensor of inputs: pass labels=")
            self.update(data, labels)
        elif labels is not None:
            raise InputError(
                "labels= goes with a tensor of inputs; batches of an iterable (a DataLoader) "
                "carry their own labels"
            )
        elif not isinstance(data, Iterable):
            raise InputError(
                f"data must be a tensor or an iterable of batches, got {type(data).__name__}"
            )
        else:
            for batch in data:
                self.update(batch)
        return self

    def _accumulate(self, x: Tensor, y: Tensor) -> None:
        values = self.net.run(x, keep=set(self.layers.values()))
        for layer, node in self.layers.items():
            h = values[node].reshape(len(x), -1)
            if layer not in self.stats:
                self.stats[layer] = ClassStatistics(self.num_classes, h.shape[1], h.device)
            self.stats[layer].update(h, y)
            if self.nc4:
                self._features[layer].append(h.detach().cpu())
        out = values[self.net.output].reshape(len(x), -1)
        pred = (out[:, 0] > 0).long() if out.shape[1] == 1 else out.argmax(dim=1)
        self._labels.append(y.cpu())
        self._predictions.append(pred.cpu())

    def compute(self) -> NeuralCollapseResult:
        """The metrics over every point added so far."""
        if not self._labels:
            raise InputError(
                "no points yet: call update(x, y) with at least one point before compute()"
            )
        labels = torch.cat(self._labels)
        predictions = torch.cat(self._predictions)
        weight = self.classifier.weight if self.classifier and self.net.output_dim > 1 else None
        values, penultimate = {}, None
        for layer, node in self.layers.items():
            stats = self.stats[layer]
            dual = (
                weight is not None and self.classifier is not None and node == self.classifier.node
            )
            values[layer] = stats.metrics(weight if dual else None)
            penultimate = penultimate or (layer if dual else None)
            if self.nc4:
                keep = stats.present()
                h = torch.cat(self._features[layer])
                ncc = nearest_means(h, stats.means[keep].cpu(), keep.cpu())
                values[layer]["nc4"] = (ncc != predictions).double().mean().item()
                values[layer]["ncc_error"] = (ncc != labels).double().mean().item()
        counts = next(iter(self.stats.values())).counts
        present = next(iter(self.stats.values())).present().tolist()
        return NeuralCollapseResult(
            values=values,
            num_points=len(labels),
            class_counts={c: int(counts[c]) for c in present},
            penultimate=penultimate,
            params=dict(layers=list(self.layers), nc4=self.nc4, dtype=str(self.net.dtype)),
        )


def neural_collapse(
    model: nn.Module | PWLNet,
    data,
    labels=None,
    layers: Iterable[str] | str | None = None,
    **options,
) -> NeuralCollapseResult:
    """NC1-NC4 of ``model`` on labelled data, per layer (metrics in the module docstring).

    ``data`` is a tensor of inputs (batch first) with ``labels`` (int class indices, one per
    point), or an iterable of batches (a DataLoader of (inputs, labels) tuples or of dicts)
    with ``labels`` None. Classes are the output indices (two for a single-output network,
    predicted by output > 0); only classes with points count, and there must be two.
    ``layers``: names among the network's sites (the post-activation features; see
    ``reluscope.trace(model, shape).sites``), "penultimate" (the input of the trailing Linear
    layers; an MLP's last site) and "output" (the logits). Default: all sites, "penultimate"
    when it is not a site, and "output".

    ``options``: ``nc4`` (default True; False skips NC4 and keeping the features),
    ``batch_size`` (points per forward pass, default 512), ``input_shape`` (needed to trace a
    model whose first layer is not Linear), ``input_key`` / ``label_key`` (where batches keep
    inputs and labels), ``dtype`` (cast the network; device and dtype otherwise follow the
    model). Statistics are float64 whatever the network's dtype.
    """
    return NeuralCollapseMeter(model, layers, **options).update_from(data, labels).compute()
