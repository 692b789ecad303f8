"""Standard PC structures, in Python and as DSL templates (registered on import)."""

from . import templates  # noqa: F401  (registers hclt, rat_spn, pd, hmm with the DSL)
from .chow_liu import chow_liu_tree, maximum_spanning_tree, mutual_information, tree_center
from .hclt import hclt, hclt_from_tree
from .hmm import hmm
from .pd import pd
from .rat_spn import rat_spn

__all__ = [
    "hclt",
    "hclt_from_tree",
    "rat_spn",
    "pd",
    "hmm",
    "chow_liu_tree",
    "maximum_spanning_tree",
    "mutual_information",
    "tree_center",
]
