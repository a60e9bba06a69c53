"""Writes events.jsonl and geoip.json of this case: `python generate.py` in this folder.

The school's web filter egresses through one address, 195.194.120.10, that GeoIP places in
Amsterdam (a filtering service's data centre). 50 accounts log in from it:
- 40 staff from 2 March, first at school, then from home in the evening; by 3 March the
  address has 40 accounts over a day and is learnt as shared;
- 10 parents with a baseline at home in Preston since mid-February.
On 18 March everyone logs in from home at 07:40, then at 08:00 through the school's filter: 20 minutes
from Preston to "Amsterdam" and a country none of the parents has used. Once the address is
learnt as shared that is neither far nor new: no alert.
"""

import json
from datetime import datetime, timedelta, timezone

NAT = "195.194.120.10"
events = []


def add(kind, at, account, session, ip=None):
    event = {"event_id": f"e{len(events) + 1}", "type": kind, "ts": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "account_id": account, "session_id": session}
    if ip:
        event["ip"] = ip
    events.append(event)


def visit(at, account, session, ip):
    add("login_succeeded", at, account, session, ip)
    add("logout", at + timedelta(minutes=5), account, session)


def day(text):
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


staff = [f"staff-{n:02d}" for n in range(1, 41)]
parents = [f"parent-{n:02d}" for n in range(1, 11)]
for n, account in enumerate(parents):
    for k in range(6):  # every three days from 14 February: a baseline at home
        visit(day("2026-02-14T19:00") + timedelta(days=3 * k, minutes=n), account, f"{account}-h{k}", f"81.2.69.{10 + n}")
for date in ("2026-03-02", "2026-03-03"):
    for n, account in enumerate(staff):
        visit(day(f"{date}T08:00") + timedelta(minutes=n), account, f"{account}-{date}-school", NAT)
for n, account in enumerate(staff):
    visit(day("2026-03-02T19:00") + timedelta(minutes=n), account, f"{account}-home", f"81.2.69.{100 + n}")
for n, account in enumerate(staff + parents):
    visit(day("2026-03-18T07:40") + timedelta(minutes=n // 2), account, f"{account}-0318-home", f"81.2.69.{(10 + n) % 250}")
    visit(day("2026-03-18T08:00") + timedelta(minutes=n // 2), account, f"{account}-0318-school", NAT)

events.sort(key=lambda e: e["ts"])
with open("events.jsonl", "w") as out:
    for event in events:
        out.write(json.dumps(event) + "\n")

preston = {"cidr": "81.2.69.0/24", "country": "GB", "city": "Preston", "lat": 53.7632, "lon": -2.7031, "radius_km": 5, "asn": 2856, "org": "British Telecommunications PLC", "kind": "residential"}
nat = {"cidr": "195.194.120.0/24", "country": "NL", "city": "Amsterdam", "lat": 52.374, "lon": 4.8897, "radius_km": 20, "asn": 64510, "org": "Schools Web Filtering Ltd", "kind": "school"}
with open("geoip.json", "w") as out:
    json.dump({"networks": [preston, nat]}, out, indent=2)
    out.write("\n")
