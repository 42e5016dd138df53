"""The process orchestrator: applies plans on a single node by restarting the engine process with new flags."""
