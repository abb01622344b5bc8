"""Experiments of Patel & Montufar (ICML 2025) and Humayun et al. (ICML 2024):
local complexity over training."""
