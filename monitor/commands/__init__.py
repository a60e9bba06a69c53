"""Command groups of the `portal-monitor` CLI, one module each (see `monitor.commands.cli`)."""
