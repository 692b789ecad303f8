"""Build examples/mixture.pc as a networkx graph and check both give identical log-likelihoods.

python examples/networkx_example.py
"""

from pathlib import Path

import networkx as nx
import torch

import pccompile as pc

G = nx.DiGraph()
components = [  # (weight, p(a=1), p(b), mean, std), as in mixture.pc
    (0.4, 0.1, [0.2, 0.3, 0.5], -1.0, 0.5),
    (0.6, 0.8, [0.6, 0.3, 0.1], 2.0, 1.0),
]
G.add_node("root", type="sum")
for k, (w, pa, pb, mean, std) in enumerate(components):
    G.add_node(f"a{k}", type="input", var=0, dist="bernoulli", params=[pa])
    G.add_node(f"b{k}", type="input", var=1, dist="categorical", params=pb)
    G.add_node(f"h{k}", type="input", var=2, dist="gaussian", params=[mean, std])
    G.add_node(f"comp{k}", type="product")
    G.add_edges_from([(f"comp{k}", f"a{k}"), (f"comp{k}", f"b{k}"), (f"comp{k}", f"h{k}")])
    G.add_edge("root", f"comp{k}", weight=w)

from_graph = pc.compile(G)
from_text = pc.compile(Path(__file__).parent / "mixture.pc")
x = torch.tensor([[0, 2, 0.5], [1, 0, -1.0], [-1, 1, float("nan")]])
a, b = from_graph(x), from_text(x)
print("networkx :", a.tolist())
print("DSL      :", b.tolist())
assert torch.allclose(a, b, atol=1e-6), "the two front ends disagree"
print("identical log-likelihoods; the graph was packed into", len(from_graph.circuit.nodes), "node vectors")
