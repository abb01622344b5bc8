"""The collapse-aware low-rank bound: neural collapse caps the ranks of the top layers at C.

[DERIVED] Our derivation (spec ``low_rank_bounds.md`` §4.1 and §6.1 item 8), not a statement
verified in the paper's text. It is the chain-rule bound of :mod:`reluscope.bounds.low_rank`
(same class: x -> W_L phi(... phi(W_1 x)), ||W_l||_2 <= B_l, rank W_l <= r_l, phi 1-Lipschitz
with phi(0) = 0, no biases; same unverified constants C1, C2) with the network split at layer
k (0 <= k <= L): the lower layers 1..k keep their ranks r_l, and the **collapsed** layers
k+1..L are counted at rank

    rho_l = min(r_l, C + a_l, d_l, d_{l-1}),

C the number of classes, a_l = 1 for a hidden layer whose bias was absorbed (its augmented
matrix [[W_l, b_l], [0, 1]] carries the constant unit) and 0 otherwise. In the terminal phase
of training the top layers' weights align with the C class means (Papyan et al. 2020;
Rangamani et al. 2023), so rank C loses little. The chain rule applied at every layer boundary
(the split form of spec §2.4 taken one layer at a time: for a block of several layers we have no
bound on the Gaussian complexity of differences R, so a single split is not evaluated) gives

    G(F_L(X)) <= ||X||_F * prod_l B_l * (lower_k + collapsed_k),
    t_l = w_l * C1^(L-l) * sqrt(r'_l d_l),   w_1 = 1,  w_l = 2 C2 + 1 for l >= 2,
    lower_k = sum_{l <= k} t_l,   collapsed_k = sum_{l > k} t_l,

with r'_l = r_l for l <= k and rho_l for l > k. Each collapsed layer adds at most
(2 C2 + 1) C1^(L-l) sqrt((C + 1) d_l): additive in the number of collapsed layers, and only
sqrt(d_l) in their width, where its full rank would give sqrt(min(d_l, d_{l-1}) d_l).

**Post hoc** (:func:`collapse_aware`): the bound holds for the network with the collapsed
layers replaced by their best rank-rho_l approximations (truncated SVD, which keeps the
spectral norms), with that network's empirical margin risk. The union bound of
:func:`~reluscope.bounds.low_rank.low_rank_bound_post_hoc` covers every rank r_l in
{1, ..., min(d_l, d_{l-1})} of every layer, hence every split k at once: the smallest bound
over k is valid as it stands (for the truncated network it names). k = L (nothing collapsed)
is the plain post hoc bound of the network itself. The spec's rule for k (the smallest k with
numerical rank(W_l) <= rho_l for every l > k) is reported as ``rank_split``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor, nn

from reluscope.bounds import checks
from reluscope.bounds.low_rank import (
    DEFAULT_C1,
    DEFAULT_C2,
    check_constants,
    check_layers,
    layer_terms,
    low_rank_bound,
    low_rank_bound_post_hoc,
)
from reluscope.bounds.margins import MarginStats, margins
from reluscope.bounds.network import MLP, mlp_on_data
from reluscope.bounds.norms import NetworkNorms, SampleStats
from reluscope.bounds.results import BoundResult, log10
from reluscope.errors import InputError
from reluscope.nets.pwl import PWLNet
from reluscope.records import Records, record, tagged

SOURCE = (
    "collapse-aware form of the low-rank chain-rule bound, spec low_rank_bounds.md §4.1 and "
    "§6.1.8: our derivation [DERIVED], not verified against the paper; C1 and C2 unverified"
)


def _check_split(widths: tuple[int, ...], classes: Any, split: Any) -> tuple[int, int]:
    depth = len(widths) - 1
    classes = checks.integer(classes, "classes", minimum=2)
    split = checks.integer(split, "split", minimum=0)
    if split > depth:
        raise InputError(
            f"split must lie in [0, {depth}] (layers split+1..{depth} are collapsed), got {split}"
        )
    return classes, split


def collapsed_ranks(
    widths: Sequence[int],
    ranks: Sequence[int],
    classes: int,
    split: int,
    *,
    absorbed: bool = False,
) -> tuple[int, ...]:
    """The ranks r'_l the collapse-aware bound uses (module doc): r_l for the layers
    l <= ``split``, and rho_l = min(r_l, C + a_l, d_l, d_{l-1}) for the collapsed layers
    l > ``split``, with C = ``classes`` and a_l = 1 for hidden layers when ``absorbed``."""
    widths, _, ranks = check_layers(widths, [0.0] * max(len(widths) - 1, 0), ranks)
    classes, split = _check_split(widths, classes, split)
    depth = len(ranks)
    out = []
    for layer, r in enumerate(ranks, start=1):
        if layer <= split:
            out.append(r)
            continue
        extra = int(bool(absorbed) and layer < depth)
        out.append(min(r, classes + extra, widths[layer], widths[layer - 1]))
    return tuple(out)


def collapse_rank_factor(
    widths: Sequence[int],
    ranks: Sequence[int],
    classes: int,
    split: int,
    *,
    absorbed: bool = False,
    C1: float = DEFAULT_C1,
    C2: float = DEFAULT_C2,
) -> tuple[float, float]:
    """(lower_k, collapsed_k): the rank/width factor of the collapse-aware bound split into the
    layers 1..k and the collapsed layers k+1..L (module doc). Their sum is
    ``chain_rank_factor(widths, collapsed_ranks(...))``."""
    used = collapsed_ranks(widths, ranks, classes, split, absorbed=absorbed)
    C1, C2 = check_constants(C1, C2)
    terms = layer_terms(widths, used, C1, 2 * C2 + 1)
    return sum(terms[:split]), sum(terms[split:])


def rank_split(
    widths: Sequence[int], ranks: Sequence[int], classes: int, *, absorbed: bool = False
) -> int:
    """The spec's choice of split: the smallest k in [0, L] such that every layer l > k has
    r_l <= rho_l (rank at most C, plus one for an absorbed hidden bias; module doc)."""
    widths, _, ranks = check_layers(widths, [0.0] * max(len(widths) - 1, 0), ranks)
    classes = checks.integer(classes, "classes", minimum=2)
    k = len(ranks)
    while k > 0 and collapsed_ranks(widths, ranks, classes, k - 1, absorbed=absorbed) == ranks:
        k -= 1
    return k


def _parts(
    result: BoundResult, widths: tuple[int, ...], classes: int, split: int, absorbed: bool
) -> dict[str, Any]:
    """The split's numbers, from the ranks and constants ``result`` used (so that the two
    parts add up to its rank factor)."""
    p = result.params
    lower, collapsed = collapse_rank_factor(
        widths, p["ranks"], classes, split, absorbed=absorbed, C1=p["C1"], C2=p["C2"]
    )
    return dict(
        split=split,
        classes=classes,
        collapsed_layers=tuple(range(split + 1, len(widths))),
        log10_lower_factor=log10(lower),
        log10_collapsed_factor=log10(collapsed),
        collapsed_share=collapsed / (lower + collapsed) if lower + collapsed > 0 else 0.0,
    )


def _tagged(result: BoundResult, name: str, parts: dict[str, Any]) -> BoundResult:
    return replace(result, name=name, source=SOURCE, params=dict(result.params, **parts))


def collapse_aware_bound(
    widths: Sequence[int],
    spectral_norms: Sequence[float],
    ranks: Sequence[int],
    sample: SampleStats,
    *,
    classes: int,
    split: int,
    margin: float,
    delta: float,
    margin_risk: float = 0.0,
    absorbed: bool = False,
    C1: float = DEFAULT_C1,
    C2: float = DEFAULT_C2,
) -> BoundResult:
    """The a priori collapse-aware bound: with B_l (``spectral_norms``), r_l (``ranks``), the
    class count C and the split k fixed before seeing the sample, with probability >= 1 - delta

        P(error) <= margin_risk + (2 sqrt(pi) / (gamma n)) ||X||_F prod_l B_l
                    (lower_k + collapsed_k) + sqrt(9 ln(2/delta) / (2n))

    (module doc; ``margin_risk`` is R_gamma of the network it is applied to, whose collapsed
    layers must have rank <= rho_l). ``params`` adds the split, the collapsed layers, the
    log10 of both parts of the rank factor and the collapsed part's share."""
    widths, norms, ranks = check_layers(widths, spectral_norms, ranks)
    classes, split = _check_split(widths, classes, split)
    used = collapsed_ranks(widths, ranks, classes, split, absorbed=absorbed)
    result = low_rank_bound(
        widths,
        norms,
        used,
        sample,
        margin=margin,
        delta=delta,
        margin_risk=margin_risk,
        C1=C1,
        C2=C2,
    )
    return _tagged(result, "collapse-aware", _parts(result, widths, classes, split, absorbed))


@dataclass(frozen=True)
class CollapseAwareResult(Records):
    """The post hoc collapse-aware bound of one network on one sample, at every split.

    ``by_split[k]``: the bound for the network whose layers k+1..L are truncated to rank
    rho_l (k = L: the network itself, the plain post hoc bound); ``truncated[k]``: the margin
    statistics of that network on the sample; ``accuracy[k]``: its accuracy there.
    ``best_split``: the k of the smallest bound; ``rank_split``: the spec's rule on
    ``numerical_ranks`` (numerical ranks of the weights). ``norms``: the matrices' numbers
    (exact ranks) and ``network`` the matrices themselves, augmented when biases were absorbed.
    """

    by_split: dict[int, BoundResult]
    truncated: dict[int, MarginStats]
    accuracy: dict[int, float]
    best_split: int
    rank_split: int
    classes: int
    numerical_ranks: tuple[int, ...]
    norms: NetworkNorms
    network: MLP
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return self.norms.depth

    def ranks(self, split: int) -> tuple[int, ...]:
        """The ranks of the network truncated at ``split`` (:func:`collapsed_ranks`)."""
        return collapsed_ranks(
            self.norms.widths,
            self.norms.ranks,
            self.classes,
            split,
            absorbed=self.network.biases_absorbed,
        )

    def truncated_network(self, split: int) -> MLP:
        """The network whose bound is ``by_split[split]``: layers > split truncated by SVD."""
        return self.network.truncated(self.ranks(split))

    @property
    def plain(self) -> BoundResult:
        """The post hoc low-rank bound of the network itself (no layer collapsed, k = L)."""
        return self.by_split[self.depth]

    @property
    def best(self) -> BoundResult:
        """The smallest bound over the splits (valid for the network truncated at best_split)."""
        return self.by_split[self.best_split]

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`) for every split k (column ``rank_split``):
        the bound's records (:meth:`BoundResult.to_records`), plus the metrics
        "truncated_accuracy" and "truncated_margin_risk" of the network truncated at k, with
        the columns ``best`` (k is the best split) and ``spec_rule`` (k is the spec's split)."""
        rows = []
        for k, result in self.by_split.items():
            columns = dict(
                tags, rank_split=k, best=k == self.best_split, spec_rule=k == self.rank_split
            )
            rows += result.to_records(split, **columns)
            for metric, value in (
                ("truncated_accuracy", self.accuracy[k]),
                ("truncated_margin_risk", self.truncated[k].risk),
            ):
                rows += tagged([record(metric, value, bound=result.name)], {}, split, columns)
        return rows


def collapse_aware(
    model: nn.Module | PWLNet,
    data: Tensor,
    labels: Tensor,
    *,
    margin: float,
    delta: float = 0.05,
    classes: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    C1: float = DEFAULT_C1,
    C2: float = DEFAULT_C2,
    biases: str = "absorb",
    base: float = 2.0,
) -> CollapseAwareResult:
    """The post hoc collapse-aware bound (module doc) of the MLP ``model`` on ``data``
    (n, *input_shape) with integer ``labels``, at margin ``margin`` (gamma, output units) and
    confidence 1 - ``delta``, for every split k = 0..L.

    ``classes``: C (default: the number of outputs). Lower layers use their exact ranks
    (tolerance of the model's dtype). ``rtol`` / ``atol``: tolerances of the numerical ranks
    behind ``rank_split`` (default rtol = 1e-3). ``C1``, ``C2``: Maurer's constants (unverified;
    1 = shape only). ``biases``: 'absorb' or 'error' (see :mod:`reluscope.bounds.network`).
    ``base``: the grid base of the post hoc union bound.
    """
    gamma, d = checks.margin(margin), checks.delta(delta)
    net, x, outputs, y = mlp_on_data(model, data, labels, biases=biases)
    classes = outputs.shape[1] if classes is None else checks.integer(classes, "classes", 2)
    norms = NetworkNorms.from_matrices(net.weights, eps=net.eps)
    numerical = NetworkNorms.from_matrices(
        net.weights, rank_kind="numerical", rtol=rtol, atol=atol
    ).ranks
    widths, absorbed = norms.widths, net.biases_absorbed
    sample = SampleStats.from_data(net.inputs(x))
    by_split: dict[int, BoundResult] = {}
    truncated: dict[int, MarginStats] = {}
    accuracy: dict[int, float] = {}
    for k in range(norms.depth + 1):
        used = collapsed_ranks(widths, norms.ranks, classes, k, absorbed=absorbed)
        out = outputs if used == norms.ranks else net.truncated(used)(x)
        own = margins(out, y)
        spectral = tuple(s if r > 0 else 0.0 for s, r in zip(norms.spectral, used, strict=True))
        result = low_rank_bound_post_hoc(
            widths, spectral, used, sample, own, margin=gamma, delta=d, C1=C1, C2=C2, base=base
        )
        parts = _parts(result, widths, classes, k, absorbed)
        by_split[k] = _tagged(result, "collapse-aware (post hoc)", parts)
        truncated[k] = MarginStats.from_margins(own, gamma)
        accuracy[k] = float((out.argmax(dim=1) == y).double().mean())
    best = min(by_split, key=lambda k: (by_split[k].log10_value, -k))
    return CollapseAwareResult(
        by_split=by_split,
        truncated=truncated,
        accuracy=accuracy,
        best_split=best,
        rank_split=rank_split(widths, numerical, classes, absorbed=absorbed),
        classes=classes,
        numerical_ranks=numerical,
        norms=norms,
        network=net,
        params=dict(
            margin=gamma,
            delta=d,
            rtol=rtol,
            atol=atol,
            C1=C1,
            C2=C2,
            biases=biases,
            biases_absorbed=absorbed,
            base=base,
            paths=net.paths,
        ),
    )
