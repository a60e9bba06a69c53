"""Durations in settings: a number of seconds, or text such as `500ms`, `30s`, `15m`, `12h`, `180d`.

A module of its own so detector settings (which `monitor.service.config` imports) can use it too.
"""

from __future__ import annotations


class Seconds(float):
    """A duration in seconds, written in config as a number or as `500ms`, `30s`, `15m`, `12h`, `180d`."""

    UNITS = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0))

    @classmethod
    def parse(cls, value: object) -> "Seconds":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return cls(value)
        if isinstance(value, str):
            for unit, factor in cls.UNITS:
                number = value[: -len(unit)].strip()
                if value.endswith(unit) and number.replace(".", "", 1).isdigit():
                    return cls(float(number) * factor)
        raise ValueError(f"not a duration: {value!r} (write e.g. 500ms, 30s, 15m, 12h or 180d)")


def in_words(seconds: float) -> str:
    """A duration as alerts and the console say it: "3 days", "1 h 30 min", "15 min", "40 s"."""
    seconds = max(0.0, float(seconds))
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds:.0f} s"
