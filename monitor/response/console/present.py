"""Evidence and counts laid out for a person: plain data the templates draw, no HTML here.

An alert's evidence is whatever its detector wrote. Three shapes get a picture of their own:
two places with coordinates (travel: both on a small map-like diagram with the distance, the
time between and the speed), sessions (simultaneous logins: side by side) and a count against
the usual (bulk access). Everything, shaped or not, is also listed key by key, so evidence of a
detector the console does not know yet still reads.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

from monitor.contract.durations import in_words
from monitor.contract.alerts import SEVERITIES

COUNT_KEYS = ("count", "observed", "items", "items_viewed", "records", "pupils", "distinct_pupils")
USUAL_KEYS = ("usual", "baseline", "typical", "median", "expected", "usual_count", "baseline_count")
SESSION_FIELDS = (
    ("ip", "IP address"),
    ("network", "network"),
    ("opened_at", "opened"),
    ("last_activity", "last activity"),
    ("page_views", "pages viewed"),
    ("device_id", "device"),
    ("user_agent", "browser"),
)


def duration(seconds: float | None) -> str:
    """"2 days", "1 h 30 min", "15 min", "40 s"; "?" when unknown."""
    return "?" if seconds is None else in_words(seconds)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _place(value: Any) -> dict | None:
    if not isinstance(value, dict):
        return None
    lat, lon = _number(value.get("latitude")), _number(value.get("longitude"))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    label = ", ".join(str(part) for part in (value.get("city"), value.get("country")) if part) or "unknown place"
    return {"lat": lat, "lon": lon, "label": label, "ip": value.get("ip"), "at": value.get("at"),
            "org": value.get("org"), "session_id": value.get("session_id")}


def travel(evidence: dict) -> dict | None:
    """Two places with coordinates (`from`, `to`): points on a 400 x 220 drawing, and the figures."""
    start, end = _place(evidence.get("from")), _place(evidence.get("to"))
    if start is None or end is None:
        return None
    width, height, pad = 400.0, 220.0, 40.0
    lon_min, lon_max = sorted((start["lon"], end["lon"]))
    lat_min, lat_max = sorted((start["lat"], end["lat"]))
    # Equirectangular, longitudes shrunk by the cosine of the middle latitude so shapes stay
    # about right; the box is widened to keep that aspect inside the drawing.
    squash = max(0.2, math.cos(math.radians((lat_min + lat_max) / 2)))
    span_x = max((lon_max - lon_min) * squash, 1.0)
    span_y = max(lat_max - lat_min, 1.0)
    scale = min((width - 2 * pad) / span_x, (height - 2 * pad) / span_y)
    mid_x = (lon_min + lon_max) / 2 * squash
    mid_y = (lat_min + lat_max) / 2

    def at(place: dict) -> dict:
        x = width / 2 + (place["lon"] * squash - mid_x) * scale
        y = height / 2 - (place["lat"] - mid_y) * scale
        anchor = "start" if x < width / 2 - 1 else "end" if x > width / 2 + 1 else "middle"
        return {**place, "x": round(x, 1), "y": round(y, 1), "anchor": anchor,
                "label_x": round(x + (8 if anchor == "start" else -8 if anchor == "end" else 0), 1),
                "label_y": round(y - 10 if y > 30 else y + 20, 1)}

    # A graticule every 1, 5, 10 or 30 degrees, whichever gives a handful of lines.
    step = next(s for s in (1, 2, 5, 10, 20, 30, 60) if (width / scale / squash) / s <= 8)
    left_lon = mid_x / squash - (width / 2) / scale / squash
    right_lon = mid_x / squash + (width / 2) / scale / squash
    top_lat = mid_y + (height / 2) / scale
    bottom_lat = mid_y - (height / 2) / scale
    meridians = [
        round(width / 2 + (lon * squash - mid_x) * scale, 1)
        for lon in range(math.ceil(left_lon / step) * step, math.floor(right_lon) + 1, step)
    ]
    parallels = [
        round(height / 2 - (lat - mid_y) * scale, 1)
        for lat in range(math.ceil(bottom_lat / step) * step, math.floor(top_lat) + 1, step)
    ]
    elapsed = _number(evidence.get("elapsed_seconds"))
    return {
        "width": int(width), "height": int(height),
        "from": at(start), "to": at(end),
        "meridians": meridians, "parallels": parallels, "step": step,
        "distance_km": _number(evidence.get("distance_km")),
        "beyond_km": _number(evidence.get("distance_beyond_accuracy_km")),
        "elapsed": duration(elapsed) if elapsed is not None else None,
        "speed_kmh": _number(evidence.get("speed_kmh")),
        "thresholds": evidence.get("thresholds") if isinstance(evidence.get("thresholds"), dict) else {},
    }


def sessions_side_by_side(evidence: dict) -> dict | None:
    """The sessions an alert compares (`new_session` and `live_sessions`, or `sessions`): one column each."""
    columns: list[dict] = []
    if isinstance(evidence.get("new_session"), dict):
        columns.append({"title": "the new login", **evidence["new_session"]})
    for n, other in enumerate(evidence.get("live_sessions") or []):
        if isinstance(other, dict):
            columns.append({"title": "already signed in" if n == 0 else f"also signed in ({n + 1})", **other})
    for n, other in enumerate(evidence.get("sessions") or []):
        if isinstance(other, dict):
            columns.append({"title": f"session {n + 1}", **other})
    if len(columns) < 2:
        return None
    rows = [
        {"label": label, "values": [column.get(key) for column in columns],
         "differs": len({str(column.get(key)) for column in columns}) > 1}
        for key, label in SESSION_FIELDS
        if any(column.get(key) not in (None, "") for column in columns)
    ]
    return {"columns": columns, "rows": rows}


def count_against_usual(evidence: dict) -> dict | None:
    """A count and the usual for this account or its peers: two bars on one scale."""
    count_key = next((k for k in COUNT_KEYS if _number(evidence.get(k)) is not None), None)
    usual_key = next((k for k in USUAL_KEYS if _number(evidence.get(k)) is not None), None)
    if count_key is None or usual_key is None:
        return None
    count, usual = _number(evidence[count_key]), _number(evidence[usual_key])
    top = max(count, usual, 1.0)
    return {
        "count_label": count_key.replace("_", " "), "count": count, "count_bar": stack([("high", count)], top),
        "usual_label": usual_key.replace("_", " "), "usual": usual, "usual_bar": stack([("low", usual)], top),
        "times": round(count / usual, 1) if usual else None,
        "window": evidence.get("window") or evidence.get("window_seconds"),
    }


def evidence_view(evidence: Any) -> dict:
    """Every picture that fits the evidence, and the evidence as (label, value) rows."""
    evidence = evidence if isinstance(evidence, dict) else {"value": evidence}
    return {
        "travel": travel(evidence),
        "sessions": sessions_side_by_side(evidence),
        "count": count_against_usual(evidence),
        "rows": flatten(evidence),
    }


def flatten(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """Nested evidence as ("from › city", "Leeds") rows, lists numbered, at most 6 levels deep."""
    rows: list[tuple[str, str]] = []
    if isinstance(value, dict) and depth < 6:
        for key, inner in value.items():
            label = f"{prefix} › {key}".replace("_", " ") if prefix else str(key).replace("_", " ")
            rows.extend(flatten(inner, label, depth + 1))
    elif isinstance(value, list) and depth < 6 and any(isinstance(item, (dict, list)) for item in value):
        for n, inner in enumerate(value, 1):
            rows.extend(flatten(inner, f"{prefix} {n}", depth + 1))
    elif isinstance(value, list):
        rows.append((prefix, ", ".join(str(item) for item in value) or "(none)"))
    else:
        rows.append((prefix, "(none)" if value is None or value == "" else str(value)))
    return rows


def interleave(sessions: list[dict]) -> list[dict]:
    """The timelines of two or more sessions merged in time order, each line tagged A, B, ...:
    what one browser did while the other was signed in. Empty for fewer than two on record."""
    on_record = [session for session in sessions if not session.get("missing")]
    if len(on_record) < 2:
        return []
    lines = []
    for n, session in enumerate(on_record):
        for order, line in enumerate(session["timeline"]):
            lines.append((line["at"], n, order, {**line, "tag": chr(ord("A") + n % 26), "lane": n % 4}))
    lines.sort(key=lambda item: item[:3])
    return [line for *_, line in lines]


def tag_sessions(sessions: list[dict]) -> None:
    """Give each session on record its letter and colour lane, as `interleave` tags its lines."""
    n = 0
    for session in sessions:
        if not session.get("missing"):
            session["tag"], session["lane"] = chr(ord("A") + n % 26), n % 4
            n += 1


# -- the overview's charts --------------------------------------------------------------------------


def alerts_per_day(by_day: list[dict], since: datetime | None, newest: datetime | None) -> dict:
    """Per day, the alerts of each severity stacked: bars on a 100-high scale, one per day."""
    if since is None or newest is None:
        return {"days": [], "max": 0}
    # From the first day with an alert in the window: a replay of three days shows three bars.
    first: date = min((row["day"] for row in by_day), default=since.date())
    last: date = newest.date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    counts = {day: dict.fromkeys(SEVERITIES, 0) for day in days}
    for row in by_day:
        if row["day"] in counts:
            counts[row["day"]][row["severity"]] += row["alerts"]
    top = max((sum(c.values()) for c in counts.values()), default=0) or 1
    bars = []
    for day in days:
        y = 100.0
        segments = []
        for severity in SEVERITIES:
            height = 100.0 * counts[day][severity] / top
            if height:
                y -= height
                segments.append({"severity": severity, "y": round(y, 2), "height": round(height, 2),
                                 "count": counts[day][severity]})
        bars.append({"day": day, "total": sum(counts[day].values()), "segments": segments})
    return {"days": bars, "max": top}


def by_detector(by_day: list[dict]) -> list[dict]:
    """Per detector, its alerts by severity over the window, widest first, as percentages of the largest."""
    totals: dict[str, dict[str, int]] = {}
    for row in by_day:
        totals.setdefault(row["detector"], dict.fromkeys(SEVERITIES, 0))[row["severity"]] += row["alerts"]
    top = max((sum(v.values()) for v in totals.values()), default=0) or 1
    return [
        {"detector": detector, "total": sum(counts.values()),
         "segments": stack([(s, counts[s]) for s in SEVERITIES if counts[s]], top)}
        for detector, counts in sorted(totals.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    ]


def stack(parts: list[tuple[str, float]], top: float) -> list[dict]:
    """Parts laid end to end on a 0-100 scale where `top` is 100: name, count, x and width each."""
    x = 0.0
    segments = []
    for name, count in parts:
        width = 100.0 * count / top if top else 0.0
        segments.append({"name": name, "count": count, "x": round(x, 3), "width": round(width, 3)})
        x += width
    return segments


def verdict_rates(totals: dict[tuple[str, str], int], verdicts: tuple[str, ...]) -> list[dict]:
    """Per detector with any verdict: the verdicts as shares of 100 and the false-positive rate."""
    detectors = sorted({detector for detector, _ in totals})
    rates = []
    for detector in detectors:
        counts = {verdict: int(totals.get((detector, verdict), 0)) for verdict in verdicts}
        total = sum(counts.values())
        if not total:
            continue
        rates.append({
            "detector": detector, "total": total, "counts": counts,
            "shares": stack([(v, counts[v]) for v in verdicts if counts[v]], total),
            "false_positive_rate": counts.get("false_positive", 0) / total,
        })
    return rates
