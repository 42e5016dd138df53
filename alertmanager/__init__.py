"""The Alertmanager webhook receiver: intake, planner, store, orchestrator client; generated config."""
