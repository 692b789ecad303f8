"""Files: saved models (`model_file`: .pcz, checked on load), data sets (`data`: arrays,
builtin sets, their checks) and plots (`plots`: learning curves and sample grids as PNG)."""

from .model_file import FORMAT, VERSION, check_state, load, module_state, read, save

__all__ = ["FORMAT", "VERSION", "check_state", "load", "module_state", "read", "save"]
