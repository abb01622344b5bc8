"""Low-rank layers and training modes (Pinto, Rangamani & Poggio 2025): factorised Linear
layers, a nuclear-norm penalty, spectral-norm clipping and post-training SVD truncation."""

from reluscope.lowrank.control import clip_spectral_norms_, nuclear_norm_penalty
from reluscope.lowrank.layers import LowRankLinear, factorize, truncate_svd
from reluscope.lowrank.truncation import TruncationEffect, truncation_effect

__all__ = [
    "LowRankLinear",
    "TruncationEffect",
    "clip_spectral_norms_",
    "factorize",
    "nuclear_norm_penalty",
    "truncate_svd",
    "truncation_effect",
]
