"""Regions survive compilation: every structure names its latent node vectors, and the compiled
circuit (after vectorize, normalize and id compaction) and a saved and reloaded model still
answer "which node vector is the latent of region R"."""

import pytest
from pccompile.ir import Region
from pccompile.passes import Normalize

import pccompile as pc

CASES = {
    "hclt": ('var px[64] : categorical(17)\nroot = hclt(px, latents=4, data="builtin:digits", max_rows=300)\n', 64, 4),
    "hmm": ("var x[6] : categorical(4)\nroot = hmm(x, latents=3)\n", 6, 3),
    "pd": ("var px[16] : binary\nimage = [4, 4]\nroot = pd(px, latents=2, delta=2)\n", None, 2),
    "rat_spn": ("var x[8] : binary\nroot = rat_spn(x, depth=2, repetitions=2, sums=3, inputs=2)\n", None, 3),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_structure_names_its_latents_and_compilation_keeps_them(name, tmp_path):
    text, per_variable, size = CASES[name]
    model = pc.compile(text)
    circuit = model.circuit
    assert circuit.regions, "no region annotations"
    for nid, region in circuit.regions.items():
        assert circuit.nodes[nid].size == size  # the vector's rows are the latent's states
        scope = _scope(circuit, nid)
        assert set(region.variables) <= scope
    if per_variable:  # one latent per variable: Z[v] over variable v
        assert sorted(r.variables for r in circuit.regions.values()) == [(v,) for v in range(per_variable)]
        assert circuit.latent("Z[3]") == circuit.latent((3,))
    path = tmp_path / "m.pcz"
    pc.save(model, path)
    back = pc.load(path).circuit
    assert {circuit.nodes[k].name: r for k, r in circuit.regions.items()} == {
        back.nodes[k].name: r for k, r in back.regions.items()
    }


def test_templates_point_regions_at_the_variables_they_were_given():
    circuit = pc.compile(
        "var a : binary\nvar x[4] : categorical(3)\nla = bernoulli(a)\nh = hmm(x, latents=2)\nroot = product(la, h)\n"
    ).circuit
    assert sorted(r.variables for r in circuit.regions.values()) == [(1,), (2,), (3,), (4,)]
    assert circuit.nodes[circuit.latent("Z[1]")].size == 2


def test_normalize_moves_a_bypassed_latent_to_what_replaces_it():
    a = pc.inputs(0, 2, pc.Bernoulli())
    b = pc.inputs(1, 2, pc.Bernoulli())
    wrap = pc.multiply(pc.multiply(a, b))  # a single-child product: normalize bypasses it
    wrap.region = Region("Z", (0, 1))
    circuit = pc.build(pc.summate(wrap, size=1))
    out = Normalize().run(circuit)
    nid = out.latent("Z")
    assert nid in out.nodes and out.nodes[nid].kind == "product" and len(out.nodes[nid].children) == 2


def _scope(circuit, nid):
    node = circuit.nodes[nid]
    if node.kind == "input":
        return {node.var}
    return set().union(*(_scope(circuit, c) for c in node.children))


def test_regions_are_checked_when_loading(tmp_path):
    import json
    import zipfile

    model = pc.compile(CASES["hmm"][0])
    path = tmp_path / "m.pcz"
    pc.save(model, path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    record = json.loads(members["model.json"])
    record["circuit"]["regions"][0]["node"] = 10**6
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model.json", json.dumps(record))
        z.writestr("arrays.safetensors", members["arrays.safetensors"])
    with pytest.raises(pc.FormatError, match="region record 0 names no node"):
        pc.load(path)
