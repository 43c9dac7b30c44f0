"""Decomposition: turn a set of files into a tree of subplans."""

from ._builder import decompose as decompose
from ._builder import decompose_levels as decompose_levels

__all__ = ["decompose", "decompose_levels"]
