"""Experiments of Zhang, Saxe & Latham (TMLR 2025): bias-free ReLU networks as linear networks."""
