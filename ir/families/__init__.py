"""Input families, one module each (its IR description and its kernels), in one registry.

To add a family: a module here with a `Family` subclass decorated by `@register`, imported
below; its tests in tests/. The DSL, networkx, the facade's exports, the module's tensors,
inference, EM and the Triton kernel all read the registry. The import order is the registry's
order, and so the Triton kernel's DIST codes.
"""

from ..distributions import Domain
from .base import Family, observed, observed_flows, variable_codes
from .registry import FAMILIES, family, family_names, register, triton_code

from .categorical import CATEGORICAL_INIT_SPREAD, Categorical  # isort: skip
from .bernoulli import Bernoulli  # isort: skip
from .gaussian import Gaussian  # isort: skip
from .binomial import Binomial  # isort: skip
from .exponential import Exponential  # isort: skip
from .lognormal import LogNormal  # isort: skip
from .poisson import Poisson  # isort: skip
from .geometric import Geometric  # isort: skip
from .negative_binomial import NegativeBinomial  # isort: skip
from .gamma import Gamma  # isort: skip
from .laplace import Laplace  # isort: skip
from .beta import Beta  # isort: skip

DISTRIBUTIONS = {cls.name: cls for cls in FAMILIES}
"""Family name -> class (the DSL's and networkx's spelling)."""


def make_distribution(name: str, num_cats: int | None):
    """The family `name` over a variable with `num_cats` categories (None: real)."""
    return DISTRIBUTIONS[name].for_domain(Domain(num_cats))
