"""The DSL front end: grammar, parser and printer live together here."""

from .parser import parse, parse_file
from .printer import print_circuit
from .templates import TEMPLATES, TemplateContext, template

__all__ = ["parse", "parse_file", "print_circuit", "TEMPLATES", "TemplateContext", "template"]
