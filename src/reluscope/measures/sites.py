"""The neuron sites a measure looks at.

Internal to reluscope: not part of the public API.
"""

from __future__ import annotations

from collections.abc import Iterable

from reluscope.errors import InputError
from reluscope.nets.pwl import PWLNet, Site
from reluscope.validation import check_names


def select_sites(net: PWLNet, layers: Iterable[str] | str | None = None) -> list[Site]:
    """The sites named in ``layers``, in network order (all sites when None).

    Raises InputError for an unknown name (listing the sites) or a network without sites.
    """
    if not net.sites:
        raise InputError(
            "the network has no ReLU/LeakyReLU sites: expected at least one activation"
        )
    if layers is None:
        return list(net.sites)
    wanted = check_names("layers", layers, [s.name for s in net.sites], "the network's sites")
    return [s for s in net.sites if s.name in wanted]
