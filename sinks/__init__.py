"""Sinks: where alerts, flagged sessions and dead letters are delivered."""
