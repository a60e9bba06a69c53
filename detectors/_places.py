"""Helpers the location detectors share: distances, and places as alerts describe them."""

from __future__ import annotations

import math
from typing import Any

from monitor.contract.alerts import utc
from monitor.contract.durations import in_words
from monitor.places.geoip import Location

EARTH_RADIUS_KM = 6371.0088


def distance_km(a: Location, b: Location) -> float:
    """Great-circle (haversine) distance between two located places, in km."""
    lat1, lon1 = math.radians(a.latitude), math.radians(a.longitude)  # type: ignore[arg-type]
    lat2, lon2 = math.radians(b.latitude), math.radians(b.longitude)  # type: ignore[arg-type]
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def where(location: Location | None, ip: str) -> str:
    """"Lagos, NG (102.89.3.3, AS29465 MTN Nigeria Communication limited)"."""
    if location is None:
        return ip
    network = location.network_name()
    return f"{location.place()} ({ip}, {network})" if network else f"{location.place()} ({ip})"


def place_evidence(location: Location | None, ip: str, at: float, session_id: str | None) -> dict[str, Any]:
    place: dict[str, Any] = {"ip": ip, "at": utc(at), "session_id": session_id}
    if location is not None:
        place.update(
            country=location.country,
            city=location.city,
            latitude=location.latitude,
            longitude=location.longitude,
            accuracy_radius_km=location.radius_km,
            asn=location.asn,
            org=location.org,
        )
        if location.anonymous:
            place["anonymous"] = list(location.anonymous)
    return place


duration = in_words  # the one wording of a duration (monitor.contract.durations)