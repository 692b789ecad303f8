"""A compiled circuit is an nn.Module: train it jointly with a neural network in a plain torch loop.

Here a learned linear map z -> x feeds a Gaussian mixture circuit (a tiny normalising flow):
    python examples/embed_in_torch.py
"""

import torch

import pccompile as pc

torch.manual_seed(0)
circuit = pc.compile("""
var u, v : real
lu[4] = gaussian(u)
lv[4] = gaussian(v)
p = product(lu, lv)
root = sum(p)
""")
flow = torch.nn.Linear(2, 2)
opt = torch.optim.Adam([*circuit.parameters(), *flow.parameters()], lr=0.05)
data = torch.randn(1024, 2) @ torch.tensor([[2.0, 0.5], [0.0, 0.3]]) + torch.tensor([1.0, -2.0])
for step in range(201):
    opt.zero_grad()
    # change of variables: log p(x) = log p_circuit(f(x)) + log |det df/dx|
    loss = -(circuit(flow(data)) + torch.slogdet(flow.weight)[1]).mean()
    loss.backward()
    opt.step()
    if step % 50 == 0:
        print(f"step {step:3d}  negative log-likelihood {loss.item():.4f}")
