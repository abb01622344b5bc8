"""PWLNet: a network as an ordered graph of affine ops and piecewise-linear activations."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

from reluscope.errors import InputError
from reluscope.nets.checks import check_real_inputs
from reluscope.nets.ops import Op
from reluscope.nets.sites import ActivationOp, SiteOp

INPUT = "input"
State = TypeVar("State")


@dataclass
class Node:
    """One operation of the graph: its unique name, op, input node names and output shape."""

    name: str
    op: Op
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    path: str

    @property
    def is_site(self) -> bool:
        """True for a piecewise-linear, non-affine op (an activation or a max unit)."""
        return isinstance(self.op, SiteOp)


@dataclass(frozen=True)
class JacobianPass:
    """What one tangent pass gives for a batch of inputs.

    ``preactivations``: every site's pre-activation up to the last requested site (or all sites
    when the output was requested), flattened to (batch, site.size). ``site_jacobians``: the
    requested sites' Jacobians (batch, site.size, input_dim). ``output`` (batch, output_dim) and
    ``output_jacobian`` (batch, output_dim, input_dim) when requested, else None.
    """

    preactivations: dict[str, Tensor]
    site_jacobians: dict[str, Tensor]
    output: Tensor | None
    output_jacobian: Tensor | None


@dataclass(frozen=True)
class Site:
    """A layer of neurons: the site's name, the shape of its pre-activation and its op."""

    name: str
    shape: tuple[int, ...]
    op: SiteOp

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def slope(self) -> float:
        """The negative slope of a (leaky) ReLU site (ValueError for other sites)."""
        if not isinstance(self.op, ActivationOp):
            raise ValueError(
                f"site {self.name!r} ({self.op.kind}) has no slope: it is no activation"
            )
        return self.op.slope

    @property
    def pattern_width(self) -> int:
        """The number of bits of the site's pattern (see :meth:`SiteOp.pattern`)."""
        return self.op.pattern_width(self.shape)


class PWLNet:
    """A piecewise-linear network: f(x) is affine on every region of constant activation pattern.

    Built by :func:`reluscope.nets.trace`. Inputs are batched: ``x`` has shape
    ``(batch, *input_shape)``.
    """

    def __init__(
        self,
        nodes: list[Node],
        input_shape: tuple[int, ...],
        output: str,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.nodes = nodes
        # dtype and device of a network without parameters (only activations, pooling, ...)
        self._dtype = dtype
        self._device = None if device is None else torch.device(device)
        self.input_shape = tuple(input_shape)
        self.output = output
        self._by_name = {n.name: n for n in nodes}
        self.sites = [
            Site(n.name, self._shape_of(n.inputs[0]), n.op)
            for n in nodes
            if isinstance(n.op, SiteOp)
        ]
        #: The same network before BatchNorm folding, when some BatchNorm was folded.
        self.unfolded: PWLNet | None = None
        self._index = {n.name: i for i, n in enumerate(nodes)}
        self._last_use: dict[str, int] = {}
        for i, n in enumerate(nodes):
            for name in n.inputs:
                self._last_use[name] = i

    def _shape_of(self, name: str) -> tuple[int, ...]:
        return self.input_shape if name == INPUT else self._by_name[name].shape

    def shape_of(self, name: str) -> tuple[int, ...]:
        """The shape (without the batch dimension) of the value of node ``name`` or the input."""
        if name != INPUT:
            self.node(name)
        return self._shape_of(name)

    def index(self, name: str) -> int:
        """The position of node ``name`` in execution order (-1 for the input)."""
        return -1 if name == INPUT else self._index[self.node(name).name]

    def last_use(self, name: str) -> int:
        """The position of the last node that reads ``name`` (-1 when none does)."""
        return self._last_use.get(name, -1)

    def live_after(self, i: int) -> list[str]:
        """The values produced before node ``i`` that node ``i`` or a later one reads, and the
        output when it is among them; in execution order, the input first."""
        produced = [INPUT] + [n.name for n in self.nodes[:i]]
        return [a for a in produced if self.last_use(a) >= i or a == self.output]

    # ---------------------------------------------------------------- interpreter
    def interpret(
        self,
        init: Mapping[str, State],
        step: Callable[[Node, list[State]], State],
        *,
        start: int = 0,
        stop: int | None = None,
        keep: Collection[str] = (),
    ) -> dict[str, State]:
        """Walk nodes ``start .. stop - 1`` in execution order: the one graph walk of reluscope.

        ``init`` holds the states of the values the walk reads before producing them (the
        input's for ``start = 0``); each node gets ``step(node, [states of its inputs])``. A
        state is what the caller propagates: a value, a (value, tangent) pair, an affine map's
        coefficients... Hooks that record something (a site's pre-activation, its Jacobian)
        live in ``step``. A state is dropped after its last reader unless it is in ``keep`` or
        is the output's. Returns the states left: ``keep``, the output's, and those that
        later nodes (after ``stop``) still read.
        """
        stop = len(self.nodes) if stop is None else stop
        states: dict[str, Any] = dict(init)
        keep = set(keep) | {self.output}
        for i in range(start, stop):
            n = self.nodes[i]
            states[n.name] = step(n, [states[a] for a in n.inputs])
            for a in n.inputs:
                if self._last_use[a] == i and a not in keep:
                    states.pop(a, None)
        return states

    # ---------------------------------------------------------------- properties
    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._by_name[self.output].shape if self.output != INPUT else self.input_shape

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def output_dim(self) -> int:
        return math.prod(self.output_shape)

    @property
    def num_neurons(self) -> int:
        return sum(s.size for s in self.sites)

    @property
    def dtype(self) -> torch.dtype:
        return self._fixed_dtype() or torch.get_default_dtype()

    def _fixed_dtype(self) -> torch.dtype | None:
        """The parameters' dtype, else the one given; None for a parameter-free net."""
        for t in self._tensors():
            return t.dtype
        return self._dtype

    @property
    def device(self) -> torch.device:
        for t in self._tensors():
            return t.device
        return self._device or torch.device("cpu")

    def _tensors(self) -> Iterable[Tensor]:
        for n in self.nodes:
            if n.is_site:  # activation slopes are cast where they are used
                continue
            for v in vars(n.op).values():
                if isinstance(v, Tensor) and v.is_floating_point():
                    yield v

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> PWLNet:
        """A copy of the network with its parameters on ``device`` and/or in ``dtype``.

        Folded BatchNorm layers are folded again from their statistics in the new dtype.
        """
        if self.unfolded is not None:
            from reluscope.nets.trace import fold_batchnorm

            return fold_batchnorm(self.unfolded.to(device=device, dtype=dtype))
        nodes = [
            Node(n.name, n.op.to(device=device, dtype=dtype), n.inputs, n.shape, n.path)
            for n in self.nodes
        ]
        return PWLNet(
            nodes,
            self.input_shape,
            self.output,
            dtype or self._fixed_dtype(),
            device or self.device,
        )

    def node(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            raise InputError(
                f"no node named {name!r}; sites are {[s.name for s in self.sites]}"
            ) from None

    def __repr__(self) -> str:
        lines = [f"PWLNet(input_shape={self.input_shape}, output={self.output!r})"]
        for n in self.nodes:
            lines.append(f"  {n.name}: {n.op.kind}{list(n.inputs)} -> {n.shape}  [{n.path}]")
        return "\n".join(lines)

    # ---------------------------------------------------------------- evaluation
    def check_input(self, x: Tensor) -> Tensor:
        """Validate a batch of inputs and cast it to the network's dtype and device."""
        if not isinstance(x, Tensor):
            x = torch.as_tensor(x)
        check_real_inputs(x)
        if tuple(x.shape[1:]) != self.input_shape:
            raise InputError(
                f"inputs of shape {tuple(x.shape)} do not fit the network: expected "
                f"(batch, {', '.join(map(str, self.input_shape))})"
            )
        dtype = self._fixed_dtype()
        if dtype is None:  # no parameters: keep floating inputs as they are
            dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        x = x.to(device=self.device, dtype=dtype)
        if not torch.isfinite(x).all():
            raise InputError("inputs contain NaN or inf; expected finite values")
        return x

    def run(self, x: Tensor, keep: Iterable[str] | None = None) -> dict[str, Tensor]:
        """Values of the nodes in ``keep`` (all nodes when None) and of the output, for inputs x."""
        x = self.check_input(x)
        names = {INPUT, *(n.name for n in self.nodes)} if keep is None else set(keep)
        values = self.interpret({INPUT: x}, _forward, keep=names)
        return {k: v for k, v in values.items() if k in names or k == self.output}

    def __call__(self, x: Tensor) -> Tensor:
        return self.run(x, keep=())[self.output]

    forward = __call__

    def preactivations(self, x: Tensor) -> dict[str, Tensor]:
        """Pre-activations of every neuron site, by site name, each of shape (batch, *site.shape)."""
        sources = {s.name: self.node(s.name).inputs[0] for s in self.sites}
        values = self.run(x, keep=sources.values())
        return {site: values[src] for site, src in sources.items()}

    def pattern(self, x: Tensor) -> dict[str, Tensor]:
        """Pattern of every site, by site name: bool (batch, site.pattern_width).

        For a (leaky) ReLU site the bits are ``pre-activation > 0``, one per neuron; see
        :meth:`reluscope.nets.sites.SiteOp.pattern` for the other sites.
        """
        pre = self.preactivations(x)
        return {s.name: s.op.pattern(pre[s.name]) for s in self.sites}

    def pattern_vector(self, x: Tensor) -> Tensor:
        """All sites' patterns flattened and concatenated: bool (batch, pattern_width)."""
        pats = self.pattern(x)
        if not pats:
            return torch.zeros(len(x), 0, dtype=torch.bool, device=self.device)
        return torch.cat([p.reshape(p.shape[0], -1) for p in pats.values()], dim=1)

    @property
    def pattern_width(self) -> int:
        """The length of :meth:`pattern_vector`: num_neurons for a (leaky) ReLU network."""
        return sum(s.pattern_width for s in self.sites)

    def local_affine(self, x: Tensor, chunk_size: int = 256) -> tuple[Tensor, Tensor]:
        """The affine map of the region containing each input: f(y) = J y + c on x's region.

        Returns J of shape (batch, output_dim, input_dim) and c of shape (batch, output_dim), with
        inputs and outputs flattened. A neuron with pre-activation exactly 0 counts as inactive.
        """
        x = self.check_input(x)
        parts = [self._local_affine(x[i : i + chunk_size]) for i in range(0, len(x), chunk_size)]
        if not parts:
            d = self.dtype
            return (
                torch.zeros(0, self.output_dim, self.input_dim, dtype=d, device=self.device),
                torch.zeros(0, self.output_dim, dtype=d, device=self.device),
            )
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def jacobian_pass(
        self, x: Tensor, sites: Iterable[str] = (), output: bool = False
    ) -> JacobianPass:
        """One forward-mode pass over the batch ``x`` (already checked, in the net's dtype/device):
        Jacobians of the pre-activations of ``sites`` and, with ``output``, of the output.

        The identity tangent of the input is pushed through the linear parts and every site's
        local linear map (a pre-activation exactly at a breakpoint takes the piece below it;
        a max unit follows the candidate torch's max pooling returns). The pass stops after
        the last site needed when the output is not requested.
        """
        wanted = set(sites)
        if output:
            stop = len(self.nodes)
        else:
            stop = 1 + max((i for i, n in enumerate(self.nodes) if n.name in wanted), default=-1)
        b, d = x.shape[0], self.input_dim
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        tangent = eye.reshape((1, d) + self.input_shape).expand(b, -1, *self.input_shape)
        pre: dict[str, Tensor] = {}
        jacs: dict[str, Tensor] = {}

        def step(n: Node, ins: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
            if isinstance(n.op, SiteOp):
                (z, t), op = ins[0], n.op
                pre[n.name] = z.reshape(b, -1)
                if n.name in wanted:
                    jacs[n.name] = t.reshape(b, d, -1).transpose(1, 2)
                return op.forward(z), op.push(op.local(z), t)
            return push_affine(n.op, ins)

        states = self.interpret({INPUT: (x, tangent)}, step, stop=stop)
        if not output:
            return JacobianPass(pre, jacs, None, None)
        value, t = states[self.output]
        out_jac = t.reshape(b, d, -1).transpose(1, 2)
        return JacobianPass(pre, jacs, value.reshape(b, -1), out_jac)

    def _local_affine(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = self.jacobian_pass(x, output=True)
        assert p.output is not None and p.output_jacobian is not None  # output=True gives both
        const = p.output - torch.einsum("bod,bd->bo", p.output_jacobian, x.reshape(len(x), -1))
        return p.output_jacobian, const


def _forward(node: Node, ins: list[Tensor]) -> Tensor:
    return node.op.forward(*ins)


def push_affine(op: Op, ins: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """An affine op on (value, tangents) pairs; tangents are (batch, k, *shape)."""
    b, k = ins[0][1].shape[:2]
    flat = [t.reshape((b * k,) + t.shape[2:]) for _, t in ins]
    out = op.linear(*flat)
    return op.forward(*(v for v, _ in ins)), out.reshape((b, k) + tuple(out.shape[1:]))
