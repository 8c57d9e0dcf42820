"""localfaas: a local OpenFaaS gateway for Python functions."""

__version__ = "0.1.0"
