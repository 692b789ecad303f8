"""Analyses of a circuit on data: flows (`flows`: node, edge and EM statistics), the analyses
the passes read (`provider`: edge flows by node id) and the likelihood's units (`metrics`)."""

from .provider import circuit_edge_flows, provider_for

__all__ = ["circuit_edge_flows", "provider_for"]
