"""OptiInfra: the Prometheus-native performance layer for LLM inference fleets."""

__version__ = "0.1.0"
