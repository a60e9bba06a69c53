"""Helpers the location detectors share: distances, and places as alerts describe them."""

from __future__ import annotations

import math
from typing import Any

from monitor.contract.alerts import utc
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


def duration(seconds: float) -> str:
    """"3 days", "1 h 30 min", "15 min", "40 s"."""
    seconds = max(0.0, seconds)
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds:.0f} s"
