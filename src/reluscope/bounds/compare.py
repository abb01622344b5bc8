"""All the bounds on one network and one sample, side by side: :func:`compare` -> BoundTable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from reluscope.bounds import checks
from reluscope.bounds.bft import bft_bound
from reluscope.bounds.frobenius import grs_bound, nts_bound
from reluscope.bounds.gaussian_complexity import ComplexityEstimate, gaussian_complexity_estimate
from reluscope.bounds.low_rank import (
    DEFAULT_C1,
    DEFAULT_C2,
    low_rank_bound,
    low_rank_bound_post_hoc,
)
from reluscope.bounds.margins import MarginStats, margins
from reluscope.bounds.nbs import nbs_bound
from reluscope.bounds.network import mlp_on_data, mlp_weights
from reluscope.bounds.norms import NetworkNorms, SampleStats
from reluscope.bounds.results import BoundResult
from reluscope.errors import InputError, did_you_mean
from reluscope.nets.pwl import PWLNet
from reluscope.records import Records, record, tagged
from reluscope.validation import invalid

BOUNDS = ("low-rank", "low-rank-post-hoc", "grs", "bft", "nbs", "nts")
RANKS = ("exact", "numerical")


@dataclass(frozen=True)
class BoundTable(Records):
    """The bounds of one network on one sample (``results``, one per bound, in the order asked).

    ``margins``: the network's margin statistics at the margin used; ``norms`` and ``sample``:
    the numbers the bounds read (of the augmented matrices and inputs when biases were
    absorbed); ``truncated_margins``: those of the network truncated to the ranks used, when
    they are below the exact ranks (the low-rank bounds then hold for that truncated network);
    ``estimate``: the Monte Carlo Gaussian complexity estimate when asked for.
    """

    results: tuple[BoundResult, ...]
    margins: MarginStats
    norms: NetworkNorms
    sample: SampleStats
    truncated_margins: MarginStats | None = None
    estimate: ComplexityEstimate | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> BoundResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no bound {name!r}; have {[r.name for r in self.results]}")

    def to_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`) of every bound
        (:meth:`BoundResult.to_records`), plus the table's margin and delta and ``tags``."""
        tags = dict(tags, margin=self.margins.margin, delta=self.params.get("delta"))
        return [row for r in self.results for row in r.to_records(split, **tags)]

    def layer_records(self, split: str | None = None, **tags: Any) -> list[dict[str, Any]]:
        """Tidy long rows (:mod:`reluscope.records`) of the numbers the bounds read per weight
        layer (``norms``; augmented matrices when biases were absorbed): metrics
        "spectral_norm", "frobenius_norm", "l21_norm", "rank" (the r_l used) and
        "stable_rank", ``layer`` the site the layer feeds ("output" for the last), plus
        ``tags``."""
        n = self.norms
        names = self.params.get("layers") or [str(i) for i in range(1, n.depth + 1)]
        columns = dict(
            spectral_norm=n.spectral,
            frobenius_norm=n.frobenius,
            l21_norm=n.l21,
            rank=n.ranks,
            stable_rank=n.stable_ranks,
        )
        rows = [
            record(metric, values[i], layer=names[i])
            for i in range(n.depth)
            for metric, values in columns.items()
        ]
        return tagged(rows, {}, split, tags)

    def summary(self, **tags: Any):
        """A wide pandas DataFrame, one row per bound (see :meth:`BoundResult.to_record`), plus
        ``tags`` and the table's margin and delta."""
        import pandas as pd

        tags = dict(tags, margin=self.margins.margin, delta=self.params.get("delta"))
        return pd.DataFrame([r.to_record(**tags) for r in self.results])

    @property
    def frame(self):
        """The table as a wide pandas DataFrame (one row per bound; see :meth:`summary`)."""
        return self.summary()


def _check_bounds(bounds: Sequence[str]) -> list[str]:
    if isinstance(bounds, str):
        bounds = [b.strip() for b in bounds.split(",") if b.strip()]
    names = list(dict.fromkeys(bounds))
    unknown = [b for b in names if b not in BOUNDS]
    if unknown or not names:
        error = invalid("bounds", f"a non-empty list of bound names among {list(BOUNDS)}", bounds)
        raise InputError(f"{error}{did_you_mean(unknown[0], BOUNDS) if unknown else ''}")
    return names


def _ranks(ranks: str | Sequence[int], exact: NetworkNorms, weights, rtol, atol) -> tuple:
    if isinstance(ranks, str):
        if ranks not in RANKS:
            raise InputError(
                f"ranks must be one of {RANKS} or one integer per layer, got {ranks!r}"
            )
        if ranks == "exact":
            return exact.ranks
        return NetworkNorms.from_matrices(
            weights, rank_kind="numerical", rtol=rtol, atol=atol
        ).ranks
    if not isinstance(ranks, Sequence) or len(ranks) != exact.depth:
        raise InputError(f"ranks must have {exact.depth} entries (one per layer), got {ranks!r}")
    return tuple(checks.integer(r, f"ranks[{i}]", minimum=0) for i, r in enumerate(ranks))


def compare(
    model: nn.Module | PWLNet,
    data: Tensor,
    labels: Tensor,
    *,
    margin: float,
    delta: float = 0.05,
    bounds: Sequence[str] = BOUNDS,
    ranks: str | Sequence[int] = "exact",
    rtol: float | None = None,
    atol: float | None = None,
    C1: float = DEFAULT_C1,
    C2: float = DEFAULT_C2,
    biases: str = "absorb",
    reference: nn.Module | PWLNet | None = None,
    base: float = 2.0,
    estimate_draws: int = 0,
    estimate_steps: int = 200,
    seed: int = 0,
) -> BoundTable:
    """Every bound of ``bounds`` for the MLP ``model`` on ``data`` (n, *input_shape) with integer
    ``labels`` (n,), at margin ``margin`` (gamma, in output units) and confidence 1 - ``delta``.

    Bounds: 'low-rank' (the chain-rule bound at B_l = ||W_l||_2 and r_l, as if they had been
    fixed in advance), 'low-rank-post-hoc' (the same with the union bound over B_l, r_l and
    gamma, valid for values read off the trained network), 'grs', 'bft', 'nbs', 'nts' (the
    prior bounds at the network's norms; see their modules). Each reports its parts in log10,
    its rank-substituted form and the empirical margin risk.

    ``ranks``: the r_l used by the low-rank bounds and the substituted forms: 'exact' (default
    tolerance), 'numerical' (singular values above max(atol, rtol * sigma_1), rtol = 1e-3 by
    default) or one integer per layer. Below the exact rank the low-rank bounds are those of the
    network truncated by SVD to rank r_l, with that network's margin risk
    (``truncated_margins``). ``C1``, ``C2``: Maurer's constants (unverified; 1 = shape only).
    ``biases``: 'absorb' (exact, through a constant input coordinate; see
    :mod:`reluscope.bounds.network`) or 'error'. ``reference``: a network of the same shape
    (e.g. at initialisation) for BFT's distances ||(W_l - M_l)^T||_{2,1}. ``base``: grid base of
    the post hoc bound. ``estimate_draws`` > 0 adds the Monte Carlo Gaussian complexity
    estimate of the low-rank class (``estimate_steps`` ascent steps, seeded with ``seed``).
    """
    gamma, d = checks.margin(margin), checks.delta(delta)
    names = _check_bounds(bounds)
    estimate_draws = checks.integer(estimate_draws, "estimate_draws", minimum=0)
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if tol is not None:
            checks.real(tol, name, nonnegative=True)
    net, x, outputs, y = mlp_on_data(model, data, labels, biases=biases)
    ref = None
    if reference is not None:
        ref = mlp_weights(reference, tuple(x.shape[1:]), force_absorb=net.biases_absorbed)
        if ref.widths != net.widths:
            raise InputError(f"reference has widths {ref.widths}, the model {net.widths}")
    exact = NetworkNorms.from_matrices(
        net.weights, reference=None if ref is None else ref.weights, eps=net.eps
    )
    used = _ranks(ranks, exact, net.weights, rtol, atol)
    norms = NetworkNorms(exact.widths, exact.spectral, exact.frobenius, exact.l21, used)
    sample = SampleStats.from_data(net.inputs(x))
    own = margins(outputs, y)
    stats = MarginStats.from_margins(own, gamma)
    low_margins, truncated, low_norms = own, None, exact.spectral
    if any(r < e for r, e in zip(used, exact.ranks, strict=True)):
        small = net.truncated(used)
        low_margins = margins(small(x), y)
        truncated = MarginStats.from_margins(low_margins, gamma)
        low_norms = tuple(s if r > 0 else 0.0 for s, r in zip(exact.spectral, used, strict=True))
    low_risk = stats.risk if truncated is None else truncated.risk
    common = dict(margin=gamma, delta=d)
    low = dict(common, C1=C1, C2=C2)
    runs = {
        "low-rank": lambda: low_rank_bound(
            norms.widths, low_norms, used, sample, margin_risk=low_risk, **low
        ),
        "low-rank-post-hoc": lambda: low_rank_bound_post_hoc(
            norms.widths, low_norms, used, sample, low_margins, base=base, **low
        ),
        "grs": lambda: grs_bound(norms, sample, margin_risk=stats.risk, **common),
        "bft": lambda: bft_bound(norms, sample, margin_risk=stats.risk, **common),
        "nbs": lambda: nbs_bound(norms, sample, margin_risk=stats.risk, **common),
        "nts": lambda: nts_bound(norms, sample, margin_risk=stats.risk, **common),
    }
    results = tuple(runs[name]() for name in names)
    estimate = None
    if estimate_draws:
        estimate = gaussian_complexity_estimate(
            net.inputs(x),
            norms.widths,
            low_norms,
            used,
            slope=net.slopes,
            draws=estimate_draws,
            steps=estimate_steps,
            C1=C1,
            C2=C2,
            seed=seed,
        )
    params = dict(
        common,
        bounds=tuple(names),
        ranks=ranks if isinstance(ranks, str) else tuple(used),
        rtol=rtol,
        atol=atol,
        C1=C1,
        C2=C2,
        biases=biases,
        biases_absorbed=net.biases_absorbed,
        base=base,
        paths=net.paths,
        layers=net.layers,
    )
    return BoundTable(results, stats, norms, sample, truncated, estimate, params)
