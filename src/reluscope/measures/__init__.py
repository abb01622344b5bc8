"""Measures of a network on data: local complexity, neighbourhood complexity, local rank,
total variation and neural collapse, and the norms and ranks of its weights.

Every measure has one call shape, ``measure(model, data, *, <options>)`` returning a result
(``weight_ranks(model, data=None, *, <options>)`` reads no data), and a streaming meter with
``update(batch)``, ``compute()``, ``reset()`` and ``merge(other)`` on the base
:class:`~reluscope.measures.meter.Meter`. Every result converts to the tidy records of
:mod:`reluscope.records` with ``to_records()`` / ``to_frame()``.
"""

from reluscope.measures.local_complexity import LocalComplexityMeter, local_complexity
from reluscope.measures.local_rank import LocalRankMeter, local_rank
from reluscope.measures.meter import Meter, Moments
from reluscope.measures.neighborhood import NeighborhoodMeter, neighborhood_complexity
from reluscope.measures.neural_collapse import (
    NeuralCollapseMeter,
    NeuralCollapseResult,
    neural_collapse,
)
from reluscope.measures.results import MeasureResult
from reluscope.measures.total_variation import TotalVariationMeter, total_variation
from reluscope.measures.weight_ranks import LayerStats, WeightRanks, weight_ranks

__all__ = [
    "LayerStats",
    "LocalComplexityMeter",
    "LocalRankMeter",
    "MeasureResult",
    "Meter",
    "Moments",
    "NeighborhoodMeter",
    "NeuralCollapseMeter",
    "NeuralCollapseResult",
    "TotalVariationMeter",
    "WeightRanks",
    "local_complexity",
    "local_rank",
    "neighborhood_complexity",
    "neural_collapse",
    "total_variation",
    "weight_ranks",
]
