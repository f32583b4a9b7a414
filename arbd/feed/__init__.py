"""Exchange connections: transport (the only WebSocket import), the per-connection driver,
supervision (backoff, heartbeat, stale-data watchdog, rotation) and REST."""
