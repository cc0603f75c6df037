"""Descriptions of the integral graph and the derived grad graph."""
import re

from autoint_cli.autoint import Concat, Constant, IntegralNetwork, PositionalEncoding, Sequential, Variable, mlp


def network():
    point = Sequential(Variable(), PositionalEncoding(2))
    code = Sequential(Constant(0), PositionalEncoding(1))
    return IntegralNetwork(Sequential(Concat(point, code), mlp(5 + 6, 8, 3, 1, "swish")), n_constants=1)


def node_lines(text):
    return [line for line in text.splitlines()[1:] if line.strip()]


def test_integral_graph_lists_every_layer_once():
    text = network().describe().integral_text
    lines = node_lines(text)
    assert text.startswith("Integral network Phi(t; c0): 10 nodes")
    assert len(lines) == 10
    assert sum("Linear" in line for line in lines) == 3
    assert sum("swish" in line for line in lines) == 2
    assert not any("d/dt" in line for line in lines)
    assert lines[-1].endswith("<- output") and "Linear 8->1" in lines[-1]


def test_grad_graph_has_derivative_rules_and_no_constant_tangent():
    desc = network().describe()
    lines = node_lines(desc.grad_text)
    rules = [line for line in lines if "d/dt" in line]
    # dt/dt, PE', concat', 3 Linear', 2 swish': the constant branch contributes no rule.
    assert len(rules) == 8
    assert sum("W dx (no bias)" in line for line in rules) == 3
    assert sum("swish'(z) * dz" in line for line in rules) == 2
    assert any("1 constant branch: zero" in line for line in rules)
    assert lines[-1].endswith("<- output") and "Linear 8->1: W dx" in lines[-1]
    # swish' reads the primal pre-activation: an edge from a primal node into a rule.
    parsed = [re.match(r"^\s+%(\d+)\s+(d/dt )?(.*)$", line).groups() for line in lines]
    primal_ids = {node for node, rule, _ in parsed if rule is None}
    swish_rule = next(label for _, rule, label in parsed if rule and label.startswith("swish'"))
    sources = re.findall(r"%(\d+)", swish_rule)
    assert len(sources) == 2 and sources[1] in primal_ids and sources[0] not in primal_ids
    # The last swish's primal output is not needed for dPhi/dt and is absent.
    assert len([line for line in lines if "d/dt" not in line and "swish" in line]) == 1


def test_dot_output_is_well_formed():
    desc = network().describe()
    for dot, name in ((desc.integral_dot, "integral_network"), (desc.grad_dot, "grad_network")):
        assert dot.startswith(f"digraph {name} {{") and dot.rstrip().endswith("}")
        declared = set(re.findall(r"^\s+(n\d+) \[label=", dot, flags=re.M))
        used = set(re.findall(r"(n\d+) -> (n\d+)", dot))
        assert {n for edge in used for n in edge} <= declared
        assert dot.count("peripheries=2") == 1
    assert desc.grad_dot.count("fillcolor=lightblue") == 8
    assert "lightblue" not in desc.integral_dot
    assert desc.text() == desc.integral_text + "\n\n" + desc.grad_text


def test_network_independent_of_t_has_an_empty_grad_graph():
    desc = IntegralNetwork(Sequential(Constant(0), mlp(2, 3, 2, 1)), n_constants=1).describe()
    assert desc.grad_text.startswith("Grad network dPhi/dt(t; c0): 0 nodes")
