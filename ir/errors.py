"""The PCError hierarchy: every error a user can cause is one of these.

Each subclass carries the context a user needs to fix the problem: a source location for
DSL errors, the node and rule for invalid circuits, the variable/row/value for bad data.
"""

from __future__ import annotations


class PCError(Exception):
    """Base of every user-facing pccompile error."""


class SourceError(PCError):
    """An error at a place in a text source (a `.pc` file or DSL string)."""

    def __init__(self, message: str, *, file: str, line: int, column: int, source_line: str = ""):
        self.file, self.line, self.column = file, line, column
        self.message = message
        text = f"{file}:{line}:{column}: {message}"
        if source_line:
            # one character per column, as the parser counts them: tabs, form feeds and a lone \r
            # are shown as spaces so the caret stands under the token
            shown = "".join(" " if ch in "\t\f\v\r" else ch for ch in source_line.rstrip())
            caret = " " * (max(column, 1) - 1) + "^"
            text += f"\n    {shown}\n    {caret}"
        super().__init__(text)


class DSLSyntaxError(SourceError):
    """The text does not follow the grammar."""


class DSLSemanticError(SourceError):
    """The text parses but means nothing valid (unknown name, wrong size, bad parameter)."""


class CircuitError(PCError):
    """A circuit breaks a structural or parameter rule; names the node and the rule."""

    rule = "circuit"

    def __init__(self, node: str | None, message: str):
        self.node, self.detail = node, message
        where = f"node '{node}'" if node is not None else "circuit"
        super().__init__(f"{where} breaks rule '{self.rule}': {message}")

    def renamed(self, node: str | None) -> "CircuitError":
        """The same error naming `node` instead (a front end's own name for the node)."""
        return type(self)(node, self.detail)


class CycleError(CircuitError):
    rule = "acyclic"


class SmoothnessError(CircuitError):
    rule = "smooth"


class DecomposabilityError(CircuitError):
    rule = "decomposable"


class SizeMismatchError(CircuitError):
    rule = "sizes agree"


class ParameterError(CircuitError):
    rule = "parameters valid"


class DomainError(CircuitError):
    rule = "variable domain"


class StructureError(CircuitError):
    rule = "well formed"


class DataError(PCError):
    """Input data does not fit the circuit's variables."""


class ArgumentError(PCError):
    """A bad argument to the API or the CLI."""


class ResourceError(PCError):
    """A size that cannot be honoured: above a documented cap (pccompile.ir.limits) or memory."""


class DistributedError(PCError):
    """A data-parallel run lost a rank: a collective call failed or timed out."""


class FormatError(PCError):
    """A saved model file is unreadable or of an unknown version."""
