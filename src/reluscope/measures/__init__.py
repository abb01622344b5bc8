"""Measures of a network on data (paper 1): local complexity, neighbourhood complexity, local
rank and total variation. Each has a functional form returning a MeasureResult and a streaming
meter (``update(batch)`` / ``compute()``)."""

from reluscope.measures.local_complexity import LocalComplexityMeter, local_complexity
from reluscope.measures.local_rank import LocalRankMeter, local_rank
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
    "LocalComplexityMeter",
    "LocalRankMeter",
    "MeasureResult",
    "NeighborhoodMeter",
    "NeuralCollapseMeter",
    "NeuralCollapseResult",
    "TotalVariationMeter",
    "local_complexity",
    "local_rank",
    "neighborhood_complexity",
    "neural_collapse",
    "total_variation",
    "LayerStats",
    "WeightRanks",
    "weight_ranks",
]
