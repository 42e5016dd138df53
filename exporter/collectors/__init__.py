"""One collector per source, behind the ``Collector`` protocol."""
