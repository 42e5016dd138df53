"""The Prometheus rule generator: taxonomy + SLO config -> recording rules, alerts, promtool tests."""
