"""Experiments of Pinto, Rangamani & Poggio (ALT 2025): generalisation bounds with low-rank layers."""
