"""Bias-free (leaky) ReLU networks as linear networks (Zhang, Saxe & Latham, TMLR 2025):
closed-form learning curves, side-by-side simulation, symmetry tests and odd/even parts.

Formulas tagged [DERIVED] in the docstrings are the spec's own reconstruction
(``specs/bias_free_relu.md``), checked numerically, not the paper's text.
"""

from reluscope.dynamics.decomposition import (
    OddEven,
    TwoLayerParts,
    odd_even,
    two_layer_decomposition,
)
from reluscope.dynamics.deep import LayerSpectra, depth_gap_example, layer_spectra, singular_values
from reluscope.dynamics.equivalence import Comparison, compare, equivalent_linear
from reluscope.dynamics.init import (
    aligned_init,
    pair_weights,
    paired_init,
    random_biases,
    random_init,
)
from reluscope.dynamics.linear_theory import (
    Modes,
    TheoryCurve,
    effective_initial_strength,
    half_way_step,
    linear_floor,
    mode_half_way_times,
    mode_strengths,
    modes,
    projected_initial_strength,
    rate,
    theory_curve,
    whiten,
    whitening_matrix,
)
from reluscope.dynamics.models import bias_free_layers, to_module
from reluscope.dynamics.simulate import Trajectory, forward, gradient_descent
from reluscope.dynamics.symmetry import SymmetryReport, symmetrize, symmetry_report
from reluscope.dynamics.teacher import cubic_teacher, gaussian_inputs

__all__ = [
    "Comparison",
    "LayerSpectra",
    "Modes",
    "OddEven",
    "SymmetryReport",
    "TheoryCurve",
    "Trajectory",
    "TwoLayerParts",
    "aligned_init",
    "bias_free_layers",
    "compare",
    "cubic_teacher",
    "depth_gap_example",
    "effective_initial_strength",
    "equivalent_linear",
    "forward",
    "gaussian_inputs",
    "gradient_descent",
    "half_way_step",
    "layer_spectra",
    "linear_floor",
    "mode_half_way_times",
    "mode_strengths",
    "modes",
    "odd_even",
    "pair_weights",
    "paired_init",
    "projected_initial_strength",
    "random_biases",
    "random_init",
    "rate",
    "singular_values",
    "symmetrize",
    "symmetry_report",
    "theory_curve",
    "to_module",
    "two_layer_decomposition",
    "whiten",
    "whitening_matrix",
]
