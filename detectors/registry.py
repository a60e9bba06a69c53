"""Detectors by id: which exist, and building the enabled ones for a shard from settings."""

from __future__ import annotations

from typing import Any, Callable

from detectors.base import Detector, DetectorContext
from detectors.brute_force import BruteForce
from detectors.impossible_travel import ImpossibleTravel
from detectors.password_spray import PasswordSpray
from detectors.new_country import NewCountry
from detectors.risky_network import RiskyNetwork
from detectors.dormant_account import DormantAccount
from detectors.dormant_account_login import DormantAccountLogin
from detectors.revoked_access_use import RevokedAccessUse
from detectors.session_left_open import SessionLeftOpen
from detectors.simultaneous_logins import SimultaneousLogins
from detectors.bulk_record_access import BulkRecordAccess
from detectors.unlinked_pupil_access import UnlinkedPupilAccess

# id -> detector class. A new detector adds one line here and one settings field in
# `monitor.service.config.DetectorSettings` under the same id.
DETECTORS: dict[str, Callable[[Any, DetectorContext], Detector]] = {
    SimultaneousLogins.id: SimultaneousLogins,
    ImpossibleTravel.id: ImpossibleTravel,
    NewCountry.id: NewCountry,
    RiskyNetwork.id: RiskyNetwork,
    DormantAccountLogin.id: DormantAccountLogin,
    RevokedAccessUse.id: RevokedAccessUse,
    SessionLeftOpen.id: SessionLeftOpen,
    UnlinkedPupilAccess.id: UnlinkedPupilAccess,
    BulkRecordAccess.id: BulkRecordAccess,
    BruteForce.id: BruteForce,
}

# Rules swept over the account registry rather than run per event in a shard
# (`monitor.accounts.lifecycle`); they have a settings section under the same id too.
SWEPT: tuple[str, ...] = (DormantAccount.id,)

# Rules keyed by source network, run in the network stage (`monitor.engine.network_stage`) over the
# login outcomes the shards publish; a settings section under the same id too.
BY_SOURCE: tuple[str, ...] = (PasswordSpray.id,)


def detector_ids() -> tuple[str, ...]:
    return tuple(DETECTORS) + SWEPT + BY_SOURCE


def location_detector_ids() -> tuple[str, ...]:
    """The detectors that need a GeoIP City database (`Detector.requires_geoip`)."""
    return tuple(detector_id for detector_id, cls in DETECTORS.items() if getattr(cls, "requires_geoip", False))


def build_detectors(settings: Any, context: DetectorContext) -> list[Detector]:
    """The enabled detectors, each given its own settings section and the shard's context."""
    built = []
    for detector_id, factory in DETECTORS.items():
        section = getattr(settings, detector_id)
        if section.enabled:
            built.append(factory(section, context))
    return built
