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

Streaming: the per-class statistics of :mod:`reluscope.measures.class_statistics`, merged in
float64, so any split into batches gives the all-at-once statistics (up to rounding). NC4 needs
the final class means for every point: the meter keeps the features (in the network's dtype, on
the CPU) unless ``nc4=False``. Memory per layer: 8 p^2 bytes, plus the features for nc4.

Modules: :mod:`~reluscope.measures.class_statistics` (statistics, NC1-NC3),
:mod:`~reluscope.measures.simplex` (distances to a simplex ETF),
:mod:`~reluscope.measures.classifier` (the classifier and the layers read), this one (the
result, the meter and the functional form).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from reluscope.errors import InputError
from reluscope.measures.batches import net_for, take_inputs, take_labels
from reluscope.measures.class_statistics import ClassStatistics, nearest_means
from reluscope.measures.classifier import find_classifier, resolve_layers
from reluscope.measures.meter import Meter
from reluscope.nets.pwl import PWLNet
from reluscope.outputs import predict
from reluscope.records import Records, record, tagged
from reluscope.validation import check_bool, check_labels

NAME = "neural_collapse"
DEFAULT_BATCH_SIZE = 512


@dataclass(frozen=True)
class NeuralCollapseResult(Records):
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

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy rows (:mod:`reluscope.records`): one per layer and metric (``nc1``, ...; exact
        statistics of the points, so stderr None), plus "num_points"."""
        rows = [
            record(metric, value, layer=layer)
            for layer, metrics in self.values.items()
            for metric, value in metrics.items()
        ]
        return tagged(rows, dict(self.params, num_points=self.num_points), split, tags)


class NeuralCollapseMeter(Meter):
    """Streaming neural collapse metrics: ``update(x, y)`` (or ``update(batch)`` with
    (inputs, labels) tuples or dicts) for each batch, then ``compute()``; ``reset()`` starts
    over and ``merge(other)`` adds another meter's points. See :func:`neural_collapse` for the
    options.

    The model is traced once, at construction, and cast to ``dtype`` when given: the meter
    measures a snapshot of its weights (build a new meter after training steps). Memory: the
    class statistics (8 p^2 bytes per layer of p features), plus, for NC4, which needs the
    final class means at every point, the features (in the network's dtype, on the CPU) unless
    ``nc4=False``.
    """

    name = NAME
    needs_sites = False

    def __init__(
        self,
        model: nn.Module | PWLNet,
        *,
        layers: Iterable[str] | str | None = None,
        nc4: bool = True,
        batch_size: int | None = DEFAULT_BATCH_SIZE,
        label_key: str | int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, batch_size=batch_size, **options)
        self.classifier = find_classifier(self.net)
        self.layers = resolve_layers(self.net, layers, self.classifier)
        self.nc4 = check_bool("nc4", nc4)
        self.label_key = label_key
        self.num_classes = max(self.net.output_dim, 2)
        self.reset()

    def options(self) -> dict[str, Any]:
        return super().options() | dict(layers=list(self.layers), nc4=self.nc4)

    def reset(self) -> None:
        """Forget every point added so far."""
        super().reset()
        self.stats_by_layer: dict[str, ClassStatistics] = {}
        self._features: dict[str, list[Tensor]] = {k: [] for k in self.layers}
        self._labels: list[Tensor] = []
        self._predictions: list[Tensor] = []

    def update(self, x: Any, y: Any = None) -> None:
        """Add a batch: inputs ``x`` with labels ``y``, or with ``y`` None a batch holding both
        (a tuple/list (inputs, labels) or a dict; see ``input_key`` and ``label_key``)."""
        if y is None:
            x, y = take_inputs(x, self.input_key), take_labels(x, self.label_key)
        x = torch.as_tensor(x)
        y = check_labels("labels", y, len(x), self.num_classes)
        with torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                chunk = self.net.check_input(x[i : i + self.batch_size])
                self._add(chunk, y[i : i + self.batch_size])

    def update_from(self, data: Any, labels: Any = None) -> NeuralCollapseMeter:
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
                f"data must be a tensor or an iterable of batches; got {type(data).__name__}"
            )
        else:
            for batch in data:
                self.update(batch)
        return self

    def merge(self, other: Meter) -> NeuralCollapseMeter:
        """Add the points seen by ``other`` (a NeuralCollapseMeter with the same options)."""
        super().merge(other)
        assert isinstance(other, NeuralCollapseMeter)
        for layer, stats in other.stats_by_layer.items():
            if layer in self.stats_by_layer:
                self.stats_by_layer[layer].merge(stats)
            else:
                mine = ClassStatistics(stats.num_classes, stats.dim, stats.means.device)
                mine.merge(stats)
                self.stats_by_layer[layer] = mine
            self._features[layer] += other._features[layer]
        self._labels += other._labels
        self._predictions += other._predictions
        return self

    def _point_values(self, x: Tensor) -> dict[str, Tensor]:
        raise InputError("NeuralCollapseMeter reads labelled points: call update(x, y)")

    def _add(self, x: Tensor, y: Tensor) -> None:
        values = self.net.run(x, keep=set(self.layers.values()))
        for layer, node in self.layers.items():
            h = values[node].reshape(len(x), -1)
            if layer not in self.stats_by_layer:
                self.stats_by_layer[layer] = ClassStatistics(self.num_classes, h.shape[1], h.device)
            self.stats_by_layer[layer].update(h, y)
            if self.nc4:
                self._features[layer].append(h.detach().cpu())
        self._labels.append(y.cpu())
        self._predictions.append(predict(values[self.net.output].reshape(len(x), -1)).cpu())

    def compute(self) -> NeuralCollapseResult:
        """The metrics over every point added so far."""
        if not self._labels:
            raise InputError(
                "no points yet: call update(x, y) with at least one point before compute()"
            )
        labels = torch.cat(self._labels)
        predictions = torch.cat(self._predictions)
        classifier = self.classifier
        weight = classifier.weight if classifier and self.net.output_dim > 1 else None
        values, penultimate = {}, None
        for layer, node in self.layers.items():
            stats = self.stats_by_layer[layer]
            dual = weight is not None and classifier is not None and node == classifier.node
            values[layer] = stats.metrics(weight if dual else None)
            penultimate = penultimate or (layer if dual else None)
            if self.nc4:
                keep = stats.present()
                h = torch.cat(self._features[layer])
                ncc = nearest_means(h, stats.means[keep].cpu(), keep.cpu())
                values[layer]["nc4"] = (ncc != predictions).double().mean().item()
                values[layer]["ncc_error"] = (ncc != labels).double().mean().item()
        first = next(iter(self.stats_by_layer.values()))
        return NeuralCollapseResult(
            values=values,
            num_points=len(labels),
            class_counts={c: int(first.counts[c]) for c in first.present().tolist()},
            penultimate=penultimate,
            params=self.options(),
        )


def neural_collapse(
    model: nn.Module | PWLNet,
    data: Any,
    *,
    labels: Any = None,
    layers: Iterable[str] | str | None = None,
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    **options: Any,
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
    ``batch_size`` (points per forward pass, default 512), ``input_shape`` (default: from the
    first Linear layer or a data tensor), ``input_key`` / ``label_key`` (where batches keep
    inputs and labels), ``dtype`` (cast the network; device and dtype otherwise follow the
    model). Statistics are float64 whatever the network's dtype.
    """
    net = net_for(model, data, input_shape, dtype)
    meter = NeuralCollapseMeter(net, layers=layers, **options)
    return meter.update_from(data, labels).compute()
