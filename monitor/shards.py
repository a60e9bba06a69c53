"""Building a shard from settings: the one place a shard's parts are put together."""

from __future__ import annotations

from detectors.base import DetectorContext
from detectors.registry import build_detectors
from monitor.config import Settings
from monitor.decode import EventDecoder
from monitor.engine import Shard
from monitor.geo import GeoServices
from monitor.networks import NetworkMap
from monitor.sessions import SessionTable


def build_shard(settings: Settings, partition: int, geo: GeoServices | None = None) -> Shard:
    """A fresh shard for `partition`, with its own session table and detector instances.

    `geo` is the process's `GeoServices` (GeoIP readers, risky lists, shared networks): build it
    once with `GeoServices.from_settings(settings)` and pass it to every shard. Without it the
    shard opens its own, which is right for one shard (a replay, a test) only.
    """
    if geo is None:
        geo = GeoServices.from_settings(settings)
    networks = NetworkMap(settings.networks.allowlist)
    sessions = SessionTable(
        networks,
        idle_timeout=settings.sessions.idle_timeout,
        max_duration=settings.sessions.max_duration,
        max_items=settings.sessions.max_items,
    )
    context = DetectorContext(sessions=sessions, networks=networks, geo=geo)
    return Shard(
        partition,
        decoder=EventDecoder(networks),
        sessions=sessions,
        detectors=build_detectors(settings.detectors, context),
        allowed_lateness=settings.engine.allowed_lateness,
        dedup_window=settings.engine.dedup_window,
        max_clock_skew=settings.engine.max_clock_skew,
        geo=geo,
    )
