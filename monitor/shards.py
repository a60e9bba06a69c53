"""Building a shard from settings: the one place a shard's parts are put together."""

from __future__ import annotations

from typing import Mapping

from detectors.base import DetectorContext
from detectors.dormant_account import DormantAccount
from detectors.registry import build_detectors
from monitor.accounts.model import Restriction
from monitor.config import Settings
from monitor.decode import EventDecoder
from monitor.engine import Shard
from monitor.networks import NetworkMap
from monitor.sessions import SessionTable


def build_shard(settings: Settings, partition: int, restricted: Mapping[str, Restriction] | None = None) -> Shard:
    """A fresh shard for `partition`, with its own session table and detector instances.

    `restricted`: the disabled and revoked accounts the account registry knows of.
    """
    networks = NetworkMap(settings.networks.allowlist)
    sessions = SessionTable(
        networks,
        idle_timeout=settings.sessions.idle_timeout,
        max_duration=settings.sessions.max_duration,
        max_items=settings.sessions.max_items,
    )
    context = DetectorContext(sessions=sessions, networks=networks, restricted=restricted)
    detectors = settings.detectors
    dormancy = detectors.dormant_account.enabled or detectors.dormant_account_login.enabled
    return Shard(
        partition,
        decoder=EventDecoder(networks),
        sessions=sessions,
        detectors=build_detectors(settings.detectors, context),
        allowed_lateness=settings.engine.allowed_lateness,
        dedup_window=settings.engine.dedup_window,
        max_clock_skew=settings.engine.max_clock_skew,
        gap_floor=DormantAccount(detectors.dormant_account).gap_floor() if dormancy else float("inf"),
    )
