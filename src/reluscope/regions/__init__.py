"""Exact linear regions of a network on lines and planes through its input space."""

from reluscope.regions.line import LinePartition, line
from reluscope.regions.plane import PlanePartition, plane, plane_through

__all__ = ["LinePartition", "PlanePartition", "line", "plane", "plane_through"]
