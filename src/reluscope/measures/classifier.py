"""The classifier of a network (its trailing affine map) and the layers whose features the
neural-collapse metrics read: the sites, "penultimate" and "output".

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from reluscope.errors import InputError
from reluscope.nets.ops import LinearOp, ReshapeOp
from reluscope.nets.pwl import INPUT, PWLNet

PENULTIMATE = "penultimate"
OUTPUT = "output"
_F64 = torch.float64


@dataclass(frozen=True)
class Classifier:
    """The affine map out = features @ weight.T + bias from the penultimate features (the
    output of node ``node``, flattened) to the network's output."""

    node: str
    weight: Tensor
    bias: Tensor | None


def find_classifier(net: PWLNet) -> Classifier | None:
    """The trailing chain of Linear layers (and reshapes) before the output, composed in
    float64; None when the output is not produced by a Linear layer on flat features."""
    a = c = None
    name = net.output
    while name != INPUT:
        node = net.node(name)
        if len(node.inputs) != 1:
            break
        source = node.inputs[0]
        if (
            isinstance(node.op, LinearOp)
            and len(node.shape) == 1
            and len(net.shape_of(source)) == 1
        ):
            w = node.op.weight.detach().to(_F64)
            b = None if node.op.bias is None else node.op.bias.detach().to(_F64)
            if a is None:
                a, c = w, b
            else:
                c = c if b is None else (a @ b if c is None else c + a @ b)
                a = a @ w
        elif not (isinstance(node.op, ReshapeOp) and a is not None):
            break
        name = source
    return None if a is None else Classifier(name, a, c)


def resolve_layers(
    net: PWLNet, layers: Iterable[str] | str | None, classifier: Classifier | None
) -> dict[str, str]:
    """Map each requested layer name to the node whose output is its features.

    Names: the network's sites (post-activation), "penultimate" (the input of the trailing
    Linear layers, when the output is made by one) and "output". Default: every site, then
    "penultimate" unless it is a site, then "output".
    """
    nodes = {s.name: s.name for s in net.sites}
    if classifier is not None:
        nodes[PENULTIMATE] = classifier.node
    nodes[OUTPUT] = net.output
    if layers is None:
        sites = {s.name for s in net.sites}
        return {
            k: v
            for k, v in nodes.items()
            if not (k == PENULTIMATE and classifier is not None and classifier.node in sites)
        }
    wanted = [layers] if isinstance(layers, str) else list(layers)
    unknown = [w for w in wanted if w not in nodes]
    if unknown:
        detail = "" if classifier else " (no 'penultimate': the output is not made by a Linear)"
        raise InputError(
            f"unknown layer(s) {unknown}; expected the network's sites "
            f"{[s.name for s in net.sites]}, {PENULTIMATE!r} or {OUTPUT!r}{detail}"
        )
    if not wanted:
        raise InputError(f"layers is empty; expected some of {list(nodes)}")
    return {w: nodes[w] for w in wanted}
