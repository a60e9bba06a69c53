"""GeoIP enrichment, risky-network lists, shared networks and the location detectors' state.

Every database here is written by the test with mmdb-writer (monitor.places.geoip_demo); nothing is
downloaded.
"""

from __future__ import annotations

import collections
import json
import random
import tracemalloc
from pathlib import Path

import msgspec
import pytest
import structlog

from detectors.registry import location_detector_ids
from monitor.commands.cli import main
from monitor.service.config import load_settings
from monitor.places.geo import GeoServices
from monitor.places.geoip import GeoIP
from monitor.places.geoip_demo import SAMPLE_NETWORKS, NetworkRecord, write_databases
from monitor.places.risky import RiskyNetworks
from monitor.service.shards import build_shard
from monitor.places.shared_networks import SKETCH_SIZE, SharedNetworks, Sighting, account_hash, egress_key, estimate

from tests.test_detector_cases import CASES, run_case

NAT_CASE = CASES / "geo_school_nat_shared_by_50_accounts"


@pytest.fixture(scope="module")
def demo_dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_databases(SAMPLE_NETWORKS, tmp_path_factory.mktemp("geoip"))


def geo_settings(paths: dict[str, str], **extra: str):
    environ = {f"PORTAL_MONITOR_GEOIP__{key.upper()}": path for key, path in paths.items()}
    environ.update(extra)
    return load_settings(None, environ=environ)


def login(n: int, account: str, ip: str, ts: str, session: str | None = None) -> bytes:
    return json.dumps(
        {"event_id": f"e{n}", "type": "login_succeeded", "ts": ts, "account_id": account, "session_id": session or f"s{n}", "ip": ip}
    ).encode()


# -- GeoIP ----------------------------------------------------------------------------------------


def test_lookup_ipv4_ipv6_and_mapped(demo_dbs: dict[str, str]) -> None:
    geoip = GeoIP.open(**demo_dbs)
    assert geoip.problems == []
    preston = geoip.lookup("81.2.69.10")
    assert (preston.country, preston.city, preston.radius_km, preston.asn) == ("GB", "Preston", 5.0, 2856)
    assert preston.org == "British Telecommunications PLC"
    assert geoip.lookup("::ffff:81.2.69.10") == preston
    lagos = geoip.lookup("2c0f:f5c0:1:2::7")
    assert (lagos.country, lagos.city, lagos.asn) == ("NG", "Lagos", 29465)
    assert geoip.lookup("185.220.101.4").anonymous == ("is_tor_exit_node",)
    assert geoip.lookup("192.0.2.1") is None


def test_lookup_cache_is_bounded(demo_dbs: dict[str, str]) -> None:
    geoip = GeoIP.open(**demo_dbs, cache_size=10)
    for n in range(100):
        geoip.lookup(f"81.2.69.{n}")
    assert len(geoip._state.cache) <= 10


def test_equal_answers_share_one_location(demo_dbs: dict[str, str]) -> None:
    """Sessions hold their Location: a million sessions from one ISP hold one instance."""
    geoip = GeoIP.open(**demo_dbs, cache_size=10)
    first = geoip.lookup("81.2.69.10")
    for n in range(100):  # past the cache's size: cleared and resolved again many times
        geoip.lookup(f"81.2.69.{n}")
    assert geoip.lookup("81.2.69.99") is first
    assert len(geoip._state.places) <= 10


def test_unreadable_database_warns_and_disables(tmp_path: Path) -> None:
    garbage = tmp_path / "GeoLite2-City.mmdb"
    garbage.write_bytes(b"not a database" * 100)
    with structlog.testing.capture_logs() as logs:
        settings = geo_settings({"city_db": str(garbage)})
        geo = GeoServices.from_settings(settings, location_detector_ids())
        shard = build_shard(settings, 0, geo=geo)
        shard.process([(0, login(1, "a", "81.2.69.10", "2026-03-02T09:00:00Z"))])
        shard.drain()
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert "not a readable MaxMind database" in warnings[0]["event"]
    assert warnings[0]["disabled"] == ["impossible_travel", "new_country"]
    assert shard.sessions.accounts["a"].sessions["s1"].location is None  # nothing to compare


def test_reload_enables_location_detectors_once_the_database_appears(tmp_path: Path) -> None:
    """geoipupdate's first download may land after the monitor started: SIGHUP is enough."""
    city = tmp_path / "GeoLite2-City.mmdb"
    with structlog.testing.capture_logs() as logs:
        settings = geo_settings({"city_db": str(city)})
        geo = GeoServices.from_settings(settings, location_detector_ids())
        shard = build_shard(settings, 0, geo=geo)
    assert "file not found" in logs[0]["event"] and not geo.located
    shard.process([(0, login(1, "a", "81.2.69.10", "2026-03-02T09:00:00Z"))])
    write_databases(SAMPLE_NETWORKS, tmp_path / "download")
    (tmp_path / "download" / "demo-City.mmdb").rename(city)
    geo.reload()
    assert geo.located
    found = shard.process(
        [
            (1, login(2, "a", "81.2.69.10", "2026-03-02T10:00:00Z")),
            (2, login(3, "a", "102.89.3.3", "2026-03-02T11:00:00Z")),
        ]
    )
    found.extend(shard.drain())
    assert [a.detector for a in found.alerts if a.detector != "simultaneous_logins"] == ["impossible_travel"]


def test_wrong_database_type_is_refused(demo_dbs: dict[str, str]) -> None:
    geoip = GeoIP.open(city_db=demo_dbs["asn_db"])
    assert not geoip.has_city
    assert "expected a City or Country database" in geoip.problems[0].error


def test_reload_swaps_in_replaced_database(tmp_path: Path) -> None:
    first = write_databases([NetworkRecord("81.2.69.0/24", "GB", "Preston", 53.76, -2.70, 5, 2856, "BT")], tmp_path)
    geoip = GeoIP.open(first["city_db"])
    assert geoip.lookup("81.2.69.10").city == "Preston"
    write_databases([NetworkRecord("81.2.69.0/24", "GB", "Lancaster", 54.05, -2.80, 5, 2856, "BT")], tmp_path)
    assert geoip.lookup("81.2.69.10").city == "Preston"  # cached until reload
    assert geoip.reload() == []
    assert geoip.lookup("81.2.69.10").city == "Lancaster"
    Path(first["city_db"]).unlink()
    assert geoip.reload()[0].error == "file not found"
    assert geoip.lookup("81.2.69.10").city == "Lancaster"  # the previous reader is kept


# -- risky networks -------------------------------------------------------------------------------


class Spec(msgspec.Struct):
    name: str
    kind: str
    file: str = ""
    entries: list[str] = []


def test_risky_lists_match_reload_atomically_and_log(tmp_path: Path) -> None:
    tor = tmp_path / "tor.txt"
    tor.write_text("185.220.101.4\n# comment\nnonsense\n2001:db8::1\n")
    risky = RiskyNetworks([Spec("tor-exits", "tor", str(tor)), Spec("cafes", "public", entries=["62.172.10.0/24", "AS64999"])])
    with structlog.testing.capture_logs() as logs:
        assert risky.reload() == {"tor-exits": 2, "cafes": 2}
    assert logs[-1]["event"] == "risky network lists loaded"
    assert logs[-1]["skipped_lines"] == {"tor-exits": 1}
    assert risky.match("185.220.101.4", None).list_name == "tor-exits"
    assert risky.match("::ffff:185.220.101.4", None).entry == "185.220.101.4"
    assert risky.match("2001:db8::1", None).kind == "tor"
    assert risky.match("62.172.10.200", None).entry == "62.172.10.0/24"
    assert risky.match("185.220.101.5", None) is None
    before = risky.lists
    tor.write_text("185.220.101.5\n")
    risky.reload()
    assert risky.lists is not before
    assert risky.match("185.220.101.4", None) is None  # the cache went with the old lists
    assert risky.match("185.220.101.5", None).list_name == "tor-exits"
    tor.unlink()
    with structlog.testing.capture_logs() as logs:
        risky.reload()
    assert logs[0]["log_level"] == "warning" and "tor-exits" in logs[0]["problems"]
    assert risky.match("185.220.101.5", None).list_name == "tor-exits"  # kept


def test_risky_asn_list_uses_the_asn_database(demo_dbs: dict[str, str]) -> None:
    geo = GeoServices(GeoIP.open(**demo_dbs), RiskyNetworks([Spec("clouds", "hosting", entries=["AS14061"])]))
    geo.risky.reload()
    match = geo.risky.match("178.62.1.1", geo.lookup("178.62.1.1"))
    assert (match.list_name, match.entry, match.hides_location) == ("clouds", "AS14061", True)


# -- shared networks ------------------------------------------------------------------------------


def test_egress_key() -> None:
    assert egress_key("194.72.10.5") == "194.72.10.5/32"
    assert egress_key("::ffff:194.72.10.5") == "194.72.10.5/32"
    assert egress_key("2a02:c7f:1234:5600::10") == "2a02:c7f:1234:5600::/64"


def test_sketch_counts_exactly_below_k_and_estimates_above() -> None:
    shared = SharedNetworks(min_accounts=20, min_span=0)
    for n in range(SKETCH_SIZE - 1):
        shared.observe("k/32", f"acct-{n}", 1000.0 + n)
        shared.observe("k/32", f"acct-{n}", 2000.0 + n)  # repeats do not count
    assert shared.entries()[0].accounts == SKETCH_SIZE - 1
    for n in range(SKETCH_SIZE - 1, 5000):
        shared.observe("k/32", f"acct-{n}", 3000.0)
    sketch = shared._seen["k/32"].hashes
    assert len(sketch) == SKETCH_SIZE
    assert 3000 < estimate(sketch) < 8000
    assert sorted(sketch) == sorted(account_hash(f"acct-{n}") for n in range(5000))[:SKETCH_SIZE]


def test_sketch_keeps_the_k_smallest_hashes_like_a_set_would() -> None:
    """The packed sketch against the plain definition: the k smallest distinct hashes seen."""
    rng = random.Random(8)
    for draws in (1, 2, SKETCH_SIZE, 5 * SKETCH_SIZE):
        pool = [rng.getrandbits(63) for _ in range(draws)]
        sighting = Sighting(pool[0], 0.0, 0.0)
        seen = {pool[0]}
        for value in rng.choices(pool, k=3 * draws):  # repeats included
            before = sorted(seen)[:SKETCH_SIZE]
            seen.add(value)
            after = sorted(seen)[:SKETCH_SIZE]
            assert sighting.add(value) == (after != before)
            assert sighting.values() == after and sighting.count() == len(after)


def test_learning_is_correct_when_accounts_are_split_over_processes() -> None:
    """30 accounts over 3 processes (10 each, below the threshold of 20): merged, it is shared."""
    processes = [SharedNetworks(min_accounts=20, min_span=0) for _ in range(3)]
    for n in range(30):
        processes[n % 3].observe("194.72.10.5/32", f"acct-{n}", 1000.0 + n)
    assert not any("194.72.10.5/32" in p for p in processes)
    # what flush/load do through PostgreSQL: union of the bottom-k sketches, capped at k
    merged: dict[str, set[int]] = collections.defaultdict(set)
    for process in processes:
        for key, values, _, _ in process.take_dirty():
            merged[key] |= set(values)
    learnt = {key for key, values in merged.items() if len(sorted(values)[:SKETCH_SIZE]) >= 20}
    for process in processes:
        process.set_remote(learnt)
    assert all("194.72.10.5/32" in p for p in processes)


def test_burst_from_one_address_is_not_learnt_before_min_span() -> None:
    shared = SharedNetworks(min_accounts=20, min_span=86400)
    for n in range(50):  # 50 accounts in 50 minutes: credential stuffing, not a school
        shared.observe("203.0.113.9/32", f"acct-{n}", 1000.0 + 60 * n)
    assert "203.0.113.9/32" not in shared
    shared.observe("203.0.113.9/32", "acct-0", 1000.0 + 86400)
    assert "203.0.113.9/32" in shared


def test_shared_networks_are_bounded_forgotten_and_restored() -> None:
    shared = SharedNetworks(min_accounts=2, min_span=0, max_tracked=1000, forget_after=86400)
    shared.observe("nat/32", "a", 0.0)
    shared.observe("nat/32", "b", 1.0)
    for n in range(5000):
        shared.observe(f"home-{n}/32", f"acct-{n}", 10.0 + n)
    assert len(shared._seen) <= 1000 and "nat/32" in shared
    copy = SharedNetworks(min_accounts=2, min_span=0)
    copy.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(shared.snapshot())))
    assert "nat/32" in copy and len(copy._seen) == len(shared._seen)
    assert shared.forget(10.0 + 5000 + 1) == len(copy._seen)
    assert "nat/32" not in shared and not shared._seen


def test_school_nat_would_alert_if_not_learnt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control of the school NAT case: the same events without learning do alert."""
    monkeypatch.chdir(NAT_CASE)
    alerts, _ = run_case(NAT_CASE, tmp_path, PORTAL_MONITOR_NETWORKS__SHARED__MIN_ACCOUNTS="64")
    counts = collections.Counter(alert.detector for alert in alerts)
    assert counts == {"impossible_travel": 50, "new_country": 10}


# -- detector state ---------------------------------------------------------------------------------


def test_snapshot_restore_gives_the_same_alerts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the school NAT control in two halves with a msgpack checkpoint between them."""
    monkeypatch.chdir(NAT_CASE)
    from tests.test_detector_cases import case_settings

    settings = case_settings(NAT_CASE, tmp_path, PORTAL_MONITOR_NETWORKS__SHARED__MIN_ACCOUNTS="64")
    lines = [line for line in (NAT_CASE / "events.jsonl").read_bytes().splitlines() if line.strip()]
    whole = build_shard(settings, 0)
    expected = whole.process(list(enumerate(lines))).alerts + whole.drain().alerts
    half = len(lines) // 2
    first = build_shard(settings, 0)
    alerts = first.process(list(enumerate(lines[:half]))).alerts + first.drain().alerts
    saved = {d.id: msgspec.msgpack.encode(d.snapshot()) for d in first.detectors}
    second = build_shard(settings, 0)
    for detector in second.detectors:
        detector.restore(msgspec.msgpack.decode(saved[detector.id]))
    alerts += second.process(list(enumerate(lines[half:], half))).alerts + second.drain().alerts
    assert [a.alert_id for a in alerts] == [a.alert_id for a in expected]


def test_new_country_history_is_small_per_account(demo_dbs: dict[str, str]) -> None:
    """Per-account state of both location detectors, with 4 countries and 5 networks each."""
    settings = geo_settings(demo_dbs, PORTAL_MONITOR_ENGINE__DEDUP_WINDOW="10")
    shard = build_shard(settings, 0)
    places = ["81.2.69.10", "83.44.1.1", "90.1.1.1", "102.89.1.1", "82.32.1.1", "86.150.1.1"]
    accounts = 2000

    def feed(first: int) -> None:
        n = 0
        for day, ip in enumerate(places):
            batch = []
            for a in range(first, first + accounts):
                n += 1
                batch.append((n, login(n + first * 10, f"parent-{a:05d}", ip, f"2026-03-{day + 1:02d}T09:00:00Z", f"s{a}-{day}")))
            shard.process(batch)

    feed(0)  # warm the GeoIP cache and interned strings
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    feed(10_000)
    shard.drain()
    shard.sessions.accounts.clear()  # leave only the detectors' state
    shard.sessions._expiry.clear()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    detectors = {d.id: d for d in shard.detectors}
    history = detectors["new_country"].history["parent-10000"]
    assert len(history.country_days()) == 4 and len(history.asn_days()) == 5
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    per_account = grown / accounts
    print(f"location detectors' state: {per_account:.0f} bytes per account")
    assert per_account < 650, per_account  # measured about 550 B, of which ~250 B are the account id key and the two dict slots
    encoded = len(msgspec.msgpack.encode(history)) + len(msgspec.msgpack.encode(detectors["impossible_travel"].last["parent-10000"]))
    assert encoded < 300, encoded


def test_history_is_bounded_most_recent_first() -> None:
    from detectors.new_country import _ASN, _ASN_KEY, _COUNTRY, _touch

    packed = b""
    for n in range(50):
        packed, known = _touch(packed, _COUNTRY, b"%02d" % n, n, 8)
        assert not known
    assert [code for code, _ in _COUNTRY.iter_unpack(packed)] == [b"%02d" % n for n in range(49, 41, -1)]
    packed, known = _touch(packed, _COUNTRY, b"45", 60, 8)
    assert known and list(_COUNTRY.iter_unpack(packed))[0] == (b"45", 60)
    assert _touch(packed, _COUNTRY, b"45", 59, 8) == (packed, True)  # a late login keeps the later day
    assert _touch(packed, _COUNTRY, b"45", 60, 8) == (packed, True)  # the same day: nothing to do
    # a key that only appears across two records' bytes is not a match
    asns = _ASN.pack(0x01020304, 0x0506) + _ASN.pack(0x0708090A, 0)
    assert not _touch(asns, _ASN, bytes([0x06, 0x05, 0x0A, 0x09]), 1, 8)[1]
    assert _touch(asns, _ASN, _ASN_KEY.pack(0x0708090A), 1, 8)[1]


# -- the command line -----------------------------------------------------------------------------


def test_networks_list_from_events(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(NAT_CASE)
    paths = write_databases(json.loads((NAT_CASE / "geoip.json").read_text())["networks"], tmp_path)
    config = tmp_path / "portal-monitor.toml"
    config.write_text("[geoip]\n" + "".join(f'{key} = "{path}"\n' for key, path in paths.items()))
    assert main(["networks", "list", "--config", str(config), "--from-events", "events.jsonl"]) == 0
    out = capsys.readouterr().out
    assert "195.194.120.10/32" in out and "Amsterdam, NL, AS64510 Schools Web Filtering Ltd" in out
    assert "81.2.69.10/32" not in out
    assert main(["networks", "list", "--config", str(config), "--from-events", "events.jsonl", "--json", "--all"]) == 0
    rows = json.loads(capsys.readouterr().out)  # -o json: one array
    nat = rows[0]
    assert (nat["network"], nat["accounts"], nat["shared"], nat["country"]) == ("195.194.120.10/32", 50, True, "NL")
    assert any(not row["shared"] for row in rows)


def test_geoip_write_demo_and_lookup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["geoip", "write-demo", str(tmp_path)]) == 0
    config = tmp_path / "geoip.toml"
    config.write_text(capsys.readouterr().out)
    assert main(["geoip", "lookup", "--config", str(config), "89.238.130.1", "-o", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["location"]["country"] == "NL" and row["risky"]["kind"] == "vpn"


def test_config_rejects_a_risky_list_without_entries() -> None:
    from monitor.service.config import ConfigError

    with pytest.raises(ConfigError, match="needs a file or entries"):
        load_settings(None, environ={"PORTAL_MONITOR_NETWORKS__RISKY": '[{name = "x", kind = "tor"}]'})

