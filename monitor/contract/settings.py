"""What every component's settings share: a section refuses unknown keys, and durations read as text.

Each component owns its settings Struct in its own module (`KafkaSettings` in
`monitor.ingest.kafka_client`, a detector's beside the detector, ...); `monitor.service.config`
composes them into the one `Settings` object read from TOML and the environment.
"""

from __future__ import annotations

import msgspec

from monitor.contract.durations import Seconds


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every settings section: unknown keys are errors, not silently ignored."""


def dec_hook(type_: type, value: object) -> object:
    """msgspec's decoding hook for settings: `Seconds` from "30m", "2s", numbers."""
    if type_ is Seconds:
        return Seconds.parse(value)
    raise NotImplementedError(type_)  # msgspec's protocol: this hook does not handle the type


def enc_hook(value: object) -> object:
    if isinstance(value, Seconds):
        return float(value)
    raise NotImplementedError(type(value))
