"""Building a shard from settings: the one place a shard's parts are put together."""

from __future__ import annotations

from typing import Mapping, Sequence

from detectors.base import DetectorContext
from detectors.dormant_account import DormantAccount
from detectors.registry import build_detectors, location_detector_ids
from monitor.contract.accounts import LentLink, Restriction
from monitor.service.config import Settings
from monitor.ingest.decode import EventDecoder
from monitor.engine.shard import Shard
from monitor.places.geo import GeoServices
from monitor.places.networks import NetworkMap
from monitor.state.interning import Interner
from monitor.state.sessions import SessionTable


def build_shard(
    settings: Settings,
    partition: int,
    geo: GeoServices | None = None,
    restricted: Mapping[str, Restriction] | None = None,
    links: Mapping[str, Sequence[LentLink]] | None = None,
    pupil_ids: Interner[str] | None = None,
) -> Shard:
    """A fresh shard for `partition`, with its own session table and detector instances.

    `geo` is the process's `GeoServices` (GeoIP readers, risky lists, shared networks): build it
    once with `GeoServices.from_settings(settings, location_detector_ids())` and pass it to every shard. Without it the
    shard opens its own, which is right for one shard (a replay, a test) only.
    `restricted`: the disabled and revoked accounts the account registry knows of; `links`: the
    pupil links it knows of (from roster imports), by parent's account. `pupil_ids`: the
    process's shared pupil ids (`monitor.state.interning.pupil_ids()`), built once like `geo`;
    without it the shard has its own.
    """
    if geo is None:
        geo = GeoServices.from_settings(settings, location_detector_ids())
    networks = NetworkMap(settings.networks.allowlist)
    sessions = SessionTable(
        networks,
        idle_timeout=settings.sessions.idle_timeout,
        max_duration=settings.sessions.max_duration,
        max_items=settings.sessions.max_items,
    )
    context = DetectorContext(
        sessions=sessions, networks=networks, geo=geo, restricted=restricted,
        links=links, pupil_ids=pupil_ids,
    )
    detectors = settings.detectors
    dormancy = detectors.dormant_account.enabled or detectors.dormant_account_login.enabled
    return Shard(
        partition,
        decoder=EventDecoder(networks, settings.engine.earliest_event_time, settings.pupils.paths),
        sessions=sessions,
        detectors=build_detectors(settings.detectors, context),
        allowed_lateness=settings.engine.allowed_lateness,
        dedup_window=settings.engine.dedup_window,
        max_clock_skew=settings.engine.max_clock_skew,
        geo=geo,
        access_log=settings.pupils.access_log,
        gap_floor=DormantAccount(detectors.dormant_account).gap_floor() if dormancy else float("inf"),
        # Login outcomes handed on to the network stage, when a source detector runs there.
        networks=networks if detectors.password_spray.enabled else None,
    )


def build_network_stage(settings: Settings, partition: int):
    """A fresh network stage for `partition` of the login-outcomes topic (`monitor.engine.network_stage`)."""
    from monitor.engine.network_stage import build_stage

    return build_stage(
        partition, settings.detectors.password_spray, settings.network_stage.allowed_lateness, settings.engine.dedup_window
    )
