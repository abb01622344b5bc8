"""reluscope: look inside piecewise-linear (ReLU) networks.

The public surface, by tier; each tier builds only on the tiers above it in this list, and each
subpackage holds the rest of its tier (``reluscope.measures.LocalComplexityMeter``, ...):

- errors: :class:`ReluscopeError`, :class:`InputError`, :class:`UnsupportedLayerError`.
- core: :func:`trace` a ``torch.nn.Module`` into a :class:`PWLNet`; its exact linear regions on
  a segment (:func:`line`) or a plane (:func:`plane`, :func:`plane_through`).
- measures (``reluscope.measures``): :func:`local_complexity`, :func:`neighborhood_complexity`,
  :func:`local_rank`, :func:`total_variation`, :func:`neural_collapse`, :func:`weight_ranks`.
- bounds (``reluscope.bounds``): :func:`compare_bounds` (``reluscope.bounds.compare``), every
  generalisation bound of a model on its data in one table.
- dynamics (``reluscope.dynamics``): bias-free ReLU networks as linear networks, in closed form
  and simulated.
- training (``reluscope.train``): :class:`Trainer`, :class:`TrainConfig`, :class:`Probe`.
- experiments (``reluscope.experiments``): the papers' experiments by name
  (:func:`get_experiment`, :func:`run_experiment`); :func:`reluscope.reproduce.reproduce` runs
  them all and writes the report.

Modules not re-exported by their package (helpers such as ``reluscope.measures.jacobians``)
are internal: their names may change without notice.
"""

from reluscope import bounds, dynamics
from reluscope.bounds import BoundTable
from reluscope.bounds import compare as compare_bounds
from reluscope.errors import InputError, ReluscopeError, UnsupportedLayerError
from reluscope.experiments import Experiment, get_experiment, run_experiment
from reluscope.measures import (
    MeasureResult,
    local_complexity,
    local_rank,
    neighborhood_complexity,
    neural_collapse,
    total_variation,
    weight_ranks,
)
from reluscope.nets import PWLNet, trace
from reluscope.regions import LinePartition, PlanePartition, line, plane, plane_through
from reluscope.train import Probe, TrainConfig, Trainer

__version__ = "0.1.0"

__all__ = [
    # errors
    "InputError",
    "ReluscopeError",
    "UnsupportedLayerError",
    # core: tracing and exact regions
    "LinePartition",
    "PWLNet",
    "PlanePartition",
    "line",
    "plane",
    "plane_through",
    "trace",
    # measures
    "MeasureResult",
    "local_complexity",
    "local_rank",
    "neighborhood_complexity",
    "neural_collapse",
    "total_variation",
    "weight_ranks",
    # bounds
    "BoundTable",
    "bounds",
    "compare_bounds",
    # dynamics
    "dynamics",
    # training
    "Probe",
    "TrainConfig",
    "Trainer",
    # experiments
    "Experiment",
    "get_experiment",
    "run_experiment",
]
