"""The whole loop on one machine: the engine simulator, a local orchestrator and ``optiinfra demo``."""
