"""Readable descriptions of an integral network and its derived grad network.

Each layer adds a node to the integral graph (its primal computation) and, when
its input depends on t, a node to the grad graph (its derivative rule). The grad
network computes every primal node as well, since derivative rules such as
``swish'(z)`` need the primal value; those dependencies are the edges from
primal to tangent nodes. Constant branches appear in the integral graph only:
their tangent is zero and never computed.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

PRIMAL = "primal"
TANGENT = "tangent"


@dataclass(frozen=True)
class NodeRef:
    """A node's primal id and, when it depends on t, its tangent id."""

    primal: int
    tangent: Optional[int] = None


@dataclass
class GraphBuilder:
    """Collects nodes and edges while layers describe themselves."""

    labels: List[str] = field(default_factory=list)
    kinds: List[str] = field(default_factory=list)
    edges: List[Tuple[int, int]] = field(default_factory=list)
    variable: Optional[NodeRef] = None

    def add(self, label: str, kind: str, sources: Sequence[int] = ()) -> int:
        node = len(self.labels)
        self.labels.append(label)
        self.kinds.append(kind)
        self.edges.extend((src, node) for src in sources)
        return node

    def unary(self, inp: NodeRef, label: str, grad_label: str, uses_primal: bool) -> NodeRef:
        """A layer y = f(x): primal node, and a tangent node when x depends on t.

        ``uses_primal`` says whether the derivative rule reads the primal input
        (activations do, linear maps do not).
        """
        primal = self.add(label, PRIMAL, [inp.primal])
        if inp.tangent is None:
            return NodeRef(primal)
        sources = [inp.tangent] + ([inp.primal] if uses_primal else [])
        return NodeRef(primal, self.add(grad_label, TANGENT, sources))


@dataclass(frozen=True)
class Description:
    """Both graphs of one integral network, as text and Graphviz DOT."""

    integral_text: str
    grad_text: str
    integral_dot: str
    grad_dot: str

    def text(self) -> str:
        return self.integral_text + "\n\n" + self.grad_text


def _quote(label: str) -> str:
    return '"' + label.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot(name: str, builder: GraphBuilder, nodes: Sequence[int], output: int) -> str:
    keep = set(nodes)
    lines = [f"digraph {name} {{", "  rankdir=BT;", '  node [shape=box, fontname="Helvetica"];']
    for node in nodes:
        style = ", style=filled, fillcolor=lightblue" if builder.kinds[node] == TANGENT else ""
        if node == output:
            style += ", peripheries=2"
        lines.append(f"  n{node} [label={_quote(builder.labels[node])}{style}];")
    lines += [f"  n{src} -> n{dst};" for src, dst in builder.edges if src in keep and dst in keep]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _listing(title: str, builder: GraphBuilder, nodes: Sequence[int], output: int) -> str:
    """One line per node in evaluation order, naming the nodes it reads."""
    sources = {node: [] for node in nodes}
    for src, dst in builder.edges:
        if dst in sources and src in sources:
            sources[dst].append(src)
    lines = [title]
    for node in nodes:
        marker = "d/dt " if builder.kinds[node] == TANGENT else "     "
        args = ", ".join(f"%{src}" for src in sources[node])
        tail = "   <- output" if node == output else ""
        lines.append(f"  %{node:<3d} {marker}{builder.labels[node]}" + (f"({args})" if args else "") + tail)
    return "\n".join(lines)


def describe_graphs(builder: GraphBuilder, output: NodeRef, n_constants: int) -> Description:
    """Turns the collected nodes into the two descriptions.

    Args:
        builder: nodes added by the network's layers, in evaluation order.
        output: the root layer's node.
        n_constants: number of constant inputs, for the titles.
    """
    consts = "".join(f"; c{i}" for i in range(n_constants))
    integral_nodes = [n for n, kind in enumerate(builder.kinds) if kind == PRIMAL]
    if output.tangent is None:
        grad_nodes: List[int] = []
        grad_output = -1
    else:
        grad_output = output.tangent
        grad_nodes = _ancestors(builder, grad_output)
    integral_title = f"Integral network Phi(t{consts}): {len(integral_nodes)} nodes"
    grad_title = (
        f"Grad network dPhi/dt(t{consts}): {len(grad_nodes)} nodes, "
        f"{sum(builder.kinds[n] == TANGENT for n in grad_nodes)} of them derivative rules"
    )
    return Description(
        integral_text=_listing(integral_title, builder, integral_nodes, output.primal),
        grad_text=_listing(grad_title, builder, grad_nodes, grad_output),
        integral_dot=_dot("integral_network", builder, integral_nodes, output.primal),
        grad_dot=_dot("grad_network", builder, grad_nodes, grad_output),
    )


def _ancestors(builder: GraphBuilder, node: int) -> List[int]:
    """Every node that ``node`` depends on, itself included, in evaluation order."""
    parents: dict = {}
    for src, dst in builder.edges:
        parents.setdefault(dst, []).append(src)
    seen = {node}
    stack = [node]
    while stack:
        for src in parents.get(stack.pop(), []):
            if src not in seen:
                seen.add(src)
                stack.append(src)
    return sorted(seen)
