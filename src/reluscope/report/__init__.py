"""Figures and the HTML report of experiment runs."""
