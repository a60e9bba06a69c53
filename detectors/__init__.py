"""Detectors: pure, synchronous rules that turn portal events into alerts."""
