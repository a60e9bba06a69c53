"""The responder console in a real browser (Debian's chromium driven by Playwright) against
`portal-monitor demo --serve`: the demo's own alerts in its embedded PostgreSQL, signed in with
the token the demo prints. Form and cookie rules are checked with aiohttp's client as well.

Screenshots: set PORTAL_MONITOR_CONSOLE_SCREENSHOTS=docs/console to (re)write the README's.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

pytestmark = pytest.mark.integration
CHROMIUM = os.environ.get("PORTAL_MONITOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWER_TOKEN = "viewer-token-for-the-console-test"
ROOT = Path(__file__).resolve().parent.parent

if not Path(CHROMIUM).exists():  # pragma: no cover - scripts/services installs it; say so loudly rather than skip
    raise RuntimeError(f"{CHROMIUM} is missing: run scripts/services (it installs Debian's chromium)")
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@dataclass
class Demo:
    url: str  # http://127.0.0.1:PORT/ui/
    token: str  # the one-off responder token the demo printed
    dsn: str
    output: list[str]

    @property
    def base(self) -> str:
        return self.url.removesuffix("/ui/")


@pytest.fixture(scope="module")
def demo():
    # Not under pytest's tmp_path: run as root, the embedded PostgreSQL drops to a user of its own,
    # which must be able to reach its data directory (pytest's base folder is private to root).
    data_dir = Path(tempfile.mkdtemp(prefix="portal-monitor-console-"))
    data_dir.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(data_dir), "PYTHONUNBUFFERED": "1",
           "PORTAL_MONITOR_HTTP__PORT": "0", "PORTAL_MONITOR_API__VIEWER_TOKEN": VIEWER_TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "demo", "--data-dir", str(data_dir / "demo"),
         "--accounts", "400", "--events", "20000", "--days", "3", "--serve"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )
    lines: list[str] = []
    serving = threading.Event()

    def drain() -> None:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("serving"):
                serving.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 300
        while not serving.wait(0.5):
            assert process.poll() is None, "demo ended early:\n" + "\n".join(lines[-40:])
            assert time.monotonic() < deadline, "demo did not start serving:\n" + "\n".join(lines[-40:])
        text = "\n".join(lines)
        match = re.search(r"console:\s+(http://\S+/ui/)\s+\(sign in with your name and the token (\S+)\)", text)
        assert match, "the demo's closing lines do not name the console:\n" + text[-2000:]
        dsn = re.search(r"PostgreSQL:\s+(postgresql://\S+)", text).group(1)
        yield Demo(match.group(1), match.group(2), dsn, lines)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
    assert not any("Traceback" in line for line in lines), "\n".join(lines[-60:])
    assert demo_token_not_logged(lines)


def demo_token_not_logged(lines: list[str]) -> bool:
    """The token appears once, in the closing lines meant for the person running the demo."""
    token = re.search(r"the token (\S+)\)", "\n".join(lines)).group(1)
    return sum(token in line for line in lines) == 1


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser: Browser, width: int = 1280) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 900 if width > 600 else 844})
    return context.new_page()


def sign_in(page: Page, demo: Demo, name: str, token: str) -> None:
    page.goto(demo.url + "signin")
    page.fill("input[name=name]", name)
    page.fill("input[name=token]", token)
    page.click("main button:has-text('Sign in')")
    expect(page.locator("header .who")).to_contain_text(name)


def query(demo: Demo, sql: str, *args):
    async def run():
        conn = await asyncpg.connect(demo.dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return in_thread(run())


def in_thread(coroutine):
    """Run a coroutine to its end in a thread of its own: the sync Playwright API keeps an event
    loop running in the test's thread once the browser is up."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# -- in the browser ---------------------------------------------------------------------------------


def test_a_page_without_a_session_redirects_to_sign_in_and_back(demo, browser):
    page = new_page(browser)
    page.goto(demo.url + "alerts?detector=impossible_travel")
    parts = urlsplit(page.url)
    assert parts.path == "/ui/signin"
    assert parse_qs(parts.query)["next"] == ["/ui/alerts?detector=impossible_travel"]
    expect(page.locator("h1")).to_have_text("Sign in")

    page.fill("input[name=name]", "Dana")
    page.fill("input[name=token]", "not-the-token")
    page.click("main button:has-text('Sign in')")
    expect(page.locator(".error")).to_contain_text("not valid")

    page.fill("input[name=token]", demo.token)
    page.click("main button:has-text('Sign in')")
    assert urlsplit(page.url).path == "/ui/alerts" and "detector=impossible_travel" in page.url
    expect(page.locator(".alert-item")).to_have_count(1)
    page.context.close()


def test_responder_filters_opens_an_alert_resolves_it_and_sees_the_verdict_counted(demo, browser):
    page = new_page(browser)
    sign_in(page, demo, "Dana Okafor", demo.token)
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator(".tiles")).to_contain_text("open")

    page.click("header nav >> text=Alerts")
    everything = page.locator(".alert-item").count()
    assert everything >= 7
    page.select_option("select[name=detector]", "impossible_travel")
    page.select_option("select[name=source]", "schools")
    page.click("form.filters button:has-text('Filter')")
    items = page.locator(".alert-item")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("impossible travel")
    page.fill("input[name=account]", "nobody-at-all")
    page.click("form.filters button:has-text('Filter')")
    expect(page.locator(".alert-item")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("No alerts match these filters")
    page.fill("input[name=account]", "")
    page.fill("input[name=since]", "yesterday-ish")
    page.click("form.filters button:has-text('Filter')")
    expect(page.locator(".error")).to_contain_text("not a time")
    page.fill("input[name=since]", "")
    page.click("form.filters button:has-text('Filter')")

    page.click(".alert-item .summary a")
    expect(page.locator("h1.sentence")).to_contain_text("km/h")
    expect(page.locator("blockquote.policy")).to_contain_text("login details")
    # Travel: both places on the diagram, with the distance, time between and speed.
    travel = page.locator("figure.travel")
    expect(travel.locator("svg circle")).to_have_count(2)
    expect(travel).to_contain_text("distance")
    expect(travel).to_contain_text("km/h")
    expect(travel).to_contain_text("time between")
    # The timeline of the flagged session: the login, every item viewed, the logout.
    timeline = page.locator("table.timeline").first
    expect(timeline.locator("tr.item").first).to_contain_text("/pupils/")
    viewed = timeline.locator("tr.item").count()
    alert_id = page.url.rsplit("/", 1)[1]
    [flagged] = query(demo, """SELECT count(*) AS n FROM session_items i JOIN alerts a ON i.session_id = ANY(a.session_ids)
                               WHERE a.alert_id = $1""", alert_id)
    assert viewed == flagged["n"] >= 1

    page.fill("form[action$='/ack'] textarea[name=note]", "calling the school office")
    page.click("form[action$='/ack'] button")
    expect(page.locator(".notice")).to_have_text("Acknowledged.")
    expect(page.locator("p.meta .status")).to_have_text("acknowledged")

    page.check("input[name=verdict][value=false_positive]")
    page.fill("form[action$='/resolve'] textarea[name=note]", "teacher on a school trip, VPN")
    page.click("form[action$='/resolve'] button")
    expect(page.locator(".notice")).to_contain_text("Resolved")
    expect(page.locator("p.meta .status")).to_have_text("resolved: false positive")
    expect(page.locator("ol.actions")).to_contain_text("Dana Okafor acknowledged")
    expect(page.locator("ol.actions")).to_contain_text("Dana Okafor resolved as false positive")
    actions = query(demo, "SELECT actor, action, verdict, note FROM alert_actions WHERE alert_id = $1 ORDER BY at", alert_id)
    assert [(a["actor"], a["action"], a["verdict"]) for a in actions] == [
        ("Dana Okafor", "acknowledge", None), ("Dana Okafor", "resolve", "false_positive")]
    [row] = query(demo, "SELECT resolved_by, acknowledged_by FROM alerts WHERE alert_id = $1", alert_id)
    assert row["resolved_by"] == row["acknowledged_by"] == "Dana Okafor"

    page.click("header nav >> text=Overview")
    rate = page.locator(".value[data-detector=impossible_travel]")
    expect(rate).to_contain_text("100% FP")
    expect(rate).to_contain_text("of 1")
    colours = page.evaluate("""[...document.querySelectorAll('svg.track rect')].map(r => getComputedStyle(r).fill)""")
    assert colours and "rgb(0, 0, 0)" not in colours  # every bar has its severity's or verdict's colour
    expect(page.locator(".tiles")).to_contain_text("1 resolved")

    # Resolving twice is refused with the reason, not an error page.
    response = page.request.post(f"{demo.base}/ui/alerts/{alert_id}/resolve",
                                 form={"csrf": csrf_of(page), "verdict": "true_positive", "note": ""})
    assert response.status == 409 and "already resolved" in response.text()
    page.context.close()


def csrf_of(page: Page) -> str:
    return page.locator("header form input[name=csrf]").get_attribute("value")


def test_a_viewer_sees_everything_but_cannot_act(demo, browser):
    page = new_page(browser)
    sign_in(page, demo, "Governor Lee", VIEWER_TOKEN)
    expect(page.locator("header .role")).to_have_text("viewer")
    page.goto(demo.url + "alerts?detector=simultaneous_logins")
    page.click(".alert-item .summary a")
    alert_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("table.side-by-side")).to_contain_text("the new login")
    expect(page.locator("table.side-by-side")).to_contain_text("already signed in")
    # Both sessions' timelines merged in time order, each line tagged with its session.
    merged = page.locator("table.timeline.merged tbody tr")
    tags = merged.locator("i.tag").all_inner_texts()
    assert set(tags) == {"A", "B"}
    assert tags != sorted(tags) and tags != sorted(tags, reverse=True)  # the two overlapped: their lines interleave
    logins = page.locator("table.timeline.merged tbody tr.mark").filter(has_text="login")
    expect(logins).to_have_count(2)
    expect(page.locator("form[action$='/resolve']")).to_have_count(0)
    expect(page.locator("section.decide")).to_contain_text("signed in as a viewer")

    # Even with a valid session and CSRF token, the server refuses a viewer's action.
    for action, form in (("resolve", {"verdict": "benign"}), ("ack", {})):
        response = page.request.post(f"{demo.base}/ui/alerts/{alert_id}/{action}", form={"csrf": csrf_of(page), **form})
        assert response.status == 403 and "only responders" in response.text()
    response = page.request.post(f"{demo.base}/ui/silences", form={"csrf": csrf_of(page), "detector": "new_country", "expires": "1d"})
    assert response.status == 403
    [row] = query(demo, "SELECT status FROM alerts WHERE alert_id = $1", alert_id)
    assert row["status"] == "open"
    assert not query(demo, "SELECT 1 FROM silences")
    page.context.close()


def test_silences_add_with_a_known_detector_and_remove(demo, browser):
    # The demo's cybercafe parent: whichever account its risky_network incident landed on.
    account = query(demo, "SELECT account_id FROM alerts WHERE detector = 'risky_network' ORDER BY account_id LIMIT 1")[0]["account_id"]
    page = new_page(browser)
    sign_in(page, demo, "Dana Okafor", demo.token)
    page.goto(demo.url + "accounts/" + account)
    expect(page.locator("h1")).to_contain_text(account)
    expect(page.locator("dl.card")).to_contain_text("status")
    stored = query(demo, "SELECT count(*) AS n FROM alerts WHERE account_id = $1", account)[0]["n"]
    assert stored >= 1  # its page lists every alert stored for it
    expect(page.locator("ol.alerts .alert-item")).to_have_count(min(stored, 50))
    page.click("text=Silence this account")
    expect(page.locator("input[name=account_id]")).to_have_value(account)
    page.select_option("form.filters select[name=detector]", "risky_network")
    page.fill("input[name=expires]", "7d")
    page.fill("input[name=reason]", "family on holiday, cafés")
    page.click("text=Add silence")
    expect(page.locator(".notice")).to_have_text("Silence added.")
    row = page.locator("table tbody tr").filter(has_text=account)
    expect(row).to_contain_text("risky network")
    expect(row).to_contain_text("Dana Okafor")
    [silence] = query(demo, "SELECT account_id, detector, created_by, expires_at > now() + interval '6 days' AS later FROM silences")
    assert tuple(silence) == (account, "risky_network", "Dana Okafor", True)

    page.goto(demo.url + "accounts/" + account)
    expect(page.locator("section").filter(has_text="Silences")).to_contain_text("risky network")

    # A detector this monitor does not have is refused with the reason.
    response = page.request.post(f"{demo.base}/ui/silences",
                                 form={"csrf": csrf_of(page), "detector": "risky_netwrok", "expires": "1d"})
    assert response.status == 400 and "not one of" in response.text()

    page.goto(demo.url + "silences")
    page.fill("input[name=network]", "192.0.2.7/24")
    page.fill("input[name=expires]", "2h")
    page.fill("input[name=reason]", "pen test of the parent portal")
    page.click("text=Add silence")
    row = page.locator("table tbody tr").filter(has_text="192.0.2.0/24")
    expect(row).to_contain_text("pen test")
    row.locator("button:has-text('Remove')").click()
    expect(page.locator(".notice")).to_have_text("Silence removed.")
    expect(page.locator("table tbody tr")).to_have_count(1)
    assert [r["detector"] for r in query(demo, "SELECT detector FROM silences")] == ["risky_network"]
    page.context.close()


PAGES = {
    "overview": "",
    "alerts": "alerts",
    "alert-travel": "alerts?detector=impossible_travel",
    "alert-simultaneous": "alerts?detector=simultaneous_logins",
    "account": "accounts/staff-000007",
    "silences": "silences",
    "signin": None,
}


def test_pages_fit_a_laptop_and_a_phone(demo, browser, tmp_path):
    """No page scrolls sideways at 1280 or 390 pixels wide (wide tables scroll inside their box)."""
    keep = os.environ.get("PORTAL_MONITOR_CONSOLE_SCREENSHOTS")
    for width in (1280, 390):
        page = new_page(browser, width)
        for name, path in PAGES.items():
            if path is None:
                page.context.clear_cookies()
                page.goto(demo.url + "signin")
            else:
                if "signin" in page.url or page.url == "about:blank":
                    sign_in(page, demo, "Dana Okafor", demo.token)
                page.goto(demo.url + path)
                if name.startswith("alert-"):
                    page.click(".alert-item .summary a")
            expect(page.locator("h1")).to_be_visible()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} at {width}px scrolls sideways by {overflow}px"
            shot = tmp_path / f"{name}-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 5000
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(keep) / shot.name)
        page.context.close()


# -- forms and cookies, with aiohttp's client ----------------------------------------------------------


async def signed_in_client(demo: Demo, token: str, name: str = "Sam") -> aiohttp.ClientSession:
    client = aiohttp.ClientSession(demo.base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    page = await (await client.get("/ui/signin")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    response = await client.post("/ui/signin", data={"csrf": csrf, "name": name, "token": token, "next": "/ui/"},
                                 allow_redirects=False)
    assert response.status == 303
    return client


def test_form_posts_without_the_csrf_token_are_refused(demo):
    in_thread(form_posts_without_csrf(demo))


async def form_posts_without_csrf(demo: Demo) -> None:
    [alert] = query(demo, "SELECT alert_id FROM alerts WHERE status = 'open' AND detector = 'dormant_account_login' LIMIT 1")
    alert_id = alert["alert_id"]
    silences_before = query(demo, "SELECT count(*) AS n FROM silences")[0]["n"]
    client = await signed_in_client(demo, demo.token)
    try:
        page = await (await client.get(f"/ui/alerts/{alert_id}")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        for form in ({"verdict": "true_positive"}, {"verdict": "true_positive", "csrf": ""},
                     {"verdict": "true_positive", "csrf": csrf[:-2] + "xx"}):
            response = await client.post(f"/ui/alerts/{alert_id}/resolve", data=form, allow_redirects=False)
            assert response.status == 403 and "CSRF" in await response.text()
        response = await client.post(f"/ui/alerts/{alert_id}/ack", data={"note": "x"}, allow_redirects=False)
        assert response.status == 403
        response = await client.post("/ui/silences", data={"detector": "new_country", "expires": "1d"}, allow_redirects=False)
        assert response.status == 403
        # A cross-site form carries the browser's Origin: refused even with a token.
        response = await client.post(f"/ui/alerts/{alert_id}/ack", data={"csrf": csrf}, allow_redirects=False,
                                     headers={"Origin": "https://evil.example"})
        assert response.status == 403
        [row] = query(demo, "SELECT status FROM alerts WHERE alert_id = $1", alert_id)
        assert row["status"] == "open"
        assert query(demo, "SELECT count(*) AS n FROM silences")[0]["n"] == silences_before
        # With the token it works: the refusals above were about the token alone.
        response = await client.post(f"/ui/alerts/{alert_id}/ack", data={"csrf": csrf, "note": "on it"}, allow_redirects=False)
        assert response.status == 303
        # The third verdict: benign (right reading, allowed behaviour), stored and counted apart.
        response = await client.post(f"/ui/alerts/{alert_id}/resolve", data={"csrf": csrf, "verdict": "benign"},
                                     allow_redirects=False)
        assert response.status == 303
        [row] = query(demo, """SELECT a.verdict, t.total FROM alerts a JOIN alert_verdict_totals t
                               ON t.detector = a.detector AND t.verdict = a.verdict WHERE a.alert_id = $1""", alert_id)
        assert tuple(row) == ("benign", 1)
        response = await client.post(f"/ui/alerts/{alert_id}/resolve", data={"csrf": csrf, "verdict": "maybe"},
                                     allow_redirects=False)
        assert response.status in (400, 409)
    finally:
        await client.close()

    # The sign-in form has its own token.
    async with aiohttp.ClientSession(demo.base) as anonymous:
        response = await anonymous.post("/ui/signin", data={"name": "x", "token": demo.token}, allow_redirects=False)
        assert response.status == 403
        assert not any(v.startswith("portal_monitor_console=") for v in response.headers.getall("Set-Cookie", []))
        # No session at all: every form sends you to sign in, nothing changes.
        response = await anonymous.post(f"/ui/alerts/{alert_id}/resolve", data={"verdict": "benign"}, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/ui/signin")


def test_session_cookie_flags_and_sign_out(demo):
    in_thread(cookie_flags_and_sign_out(demo))


async def cookie_flags_and_sign_out(demo: Demo) -> None:
    async with aiohttp.ClientSession(demo.base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        page = await (await client.get("/ui/signin")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        response = await client.post("/ui/signin", data={"csrf": csrf, "name": "Sam", "token": demo.token},
                                     allow_redirects=False, headers={"X-Forwarded-Proto": "https"})
        cookie = next(v for v in response.headers.getall("Set-Cookie") if v.startswith("portal_monitor_console="))
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "secure", "samesite", "max-age", "path"} <= flags
        assert "SameSite=Strict" in cookie and "Path=/ui" in cookie
        session = cookie.split(";")[0].split("=", 1)[1]

    async with aiohttp.ClientSession(demo.base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        page = await (await client.get("/ui/signin")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        response = await client.post("/ui/signin", data={"csrf": csrf, "name": "Sam", "token": demo.token}, allow_redirects=False)
        cookie = next(v for v in response.headers.getall("Set-Cookie") if v.startswith("portal_monitor_console="))
        assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
        overview = await client.get("/ui/", allow_redirects=False)
        assert overview.status == 200
        assert "default-src 'none'" in overview.headers["Content-Security-Policy"]
        csrf = re.search(r'name="csrf" value="([^"]+)"', await overview.text()).group(1)
        out = await client.post("/ui/signout", data={"csrf": csrf}, allow_redirects=False)
        assert out.status == 303
        old = cookie.split(";")[0].split("=", 1)[1]

    # The signed-out session is no longer accepted, even if someone kept the cookie.
    async with aiohttp.ClientSession(demo.base, headers={"Cookie": f"portal_monitor_console={old}"}) as client:
        response = await client.get("/ui/", allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/ui/signin")
    async with aiohttp.ClientSession(demo.base, headers={"Cookie": f"portal_monitor_console={session}"}) as client:
        assert (await client.get("/ui/", allow_redirects=False)).status == 200
    # The old root answers with the console now, not 404.
    async with aiohttp.ClientSession(demo.base) as client:
        response = await client.get("/", allow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == "/ui/"


def test_the_daemons_console_before_the_store_is_connected():
    """`run` mounts the console beside /metrics at once; until PostgreSQL is connected pages say so."""
    in_thread(console_before_the_store())


async def console_before_the_store() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from detectors.registry import detector_ids
    from monitor.response import console
    from monitor.service.http import build_app
    from monitor.support.metrics import Metrics

    app = build_app(Metrics(detector_ids(), []), lambda: (False, "starting"))
    assert console.mount(app, responder_token="", viewer_token="", session_lifetime=60, pool=lambda: None,
                         detector_ids=detector_ids()) is None  # no token: no console
    assert console.mount(app, responder_token="r" * 24, viewer_token="", session_lifetime=60, pool=lambda: None,
                         detector_ids=detector_ids()) is not None
    async with TestClient(TestServer(app), cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        response = await client.get("/ui/alerts", allow_redirects=False)
        assert response.status == 303
        page = await (await client.get("/ui/signin")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        response = await client.post("/ui/signin", data={"csrf": csrf, "name": "Sam", "token": "r" * 24})
        assert response.status == 503 and "not connected to PostgreSQL yet" in await response.text()
        assert (await client.get("/metrics")).status == 200
        # Signing out needs no store.
        csrf = re.search(r'name="csrf" value="([^"]+)"', await response.text()).group(1)
        response = await client.post("/ui/signout", data={"csrf": csrf}, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/ui/signin")


def test_alerts_are_paged_newest_first(demo):
    """The demo's alerts three to a page: every alert once, newest first, filters kept across pages."""
    in_thread(paged(demo))


async def paged(demo: Demo) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from detectors.registry import detector_ids
    from monitor.response.console import Console, ConsoleAuth

    pool = await asyncpg.create_pool(demo.dsn, min_size=1, max_size=2)
    app = web.Application()
    app.router.add_routes(Console(ConsoleAuth("r" * 24), lambda: pool, detector_ids(), page_size=3).routes())
    try:
        async with TestClient(TestServer(app), cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            page = await (await client.get("/ui/signin")).text()
            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
            await client.post("/ui/signin", data={"csrf": csrf, "name": "Sam", "token": "r" * 24})
            expected = [r["alert_id"] for r in await pool.fetch("SELECT alert_id FROM alerts ORDER BY ts DESC, alert_id")]
            seen: list[str] = []
            url = "/ui/alerts"
            while url:
                text = await (await client.get(url)).text()
                ids = re.findall(r'class="summary"><a href="/ui/alerts/([0-9a-f]+)"', text)
                assert 1 <= len(ids) <= 3
                seen.extend(ids)
                match = re.search(r'<a href="([^"]+)" rel="next">', text)
                url = match.group(1).replace("&amp;", "&") if match else None
            assert seen == expected and len(seen) > 3
            text = await (await client.get("/ui/alerts?source=parent&page=2")).text()
            parents = [r["alert_id"] for r in await pool.fetch(
                "SELECT alert_id FROM alerts WHERE portal = 'parent' ORDER BY ts DESC, alert_id")]
            assert re.findall(r'class="summary"><a href="/ui/alerts/([0-9a-f]+)"', text) == parents[3:6]
            assert 'rel="prev"' in text and "source=parent" in re.search(r'<a href="([^"]+)" rel="prev">', text).group(1)
            for bad in ("page=0", "page=x", "severity=urgent", "detector=nope", "source=intranet", "since=soon"):
                response = await client.get(f"/ui/alerts?{bad}")
                assert response.status == 400 and 'class="error"' in await response.text(), bad
    finally:
        await pool.close()


def test_sign_ins_and_refusals_are_counted(demo):
    in_thread(counted(demo))


async def counted(demo: Demo) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async def samples() -> dict[tuple[str, str], float]:
        async with aiohttp.ClientSession(demo.base) as client:
            text = await (await client.get("/metrics")).text()
        assert demo.token not in text
        return {(s.name, s.labels.get("outcome", "")): s.value for f in text_string_to_metric_families(text)
                for s in f.samples if s.name.startswith("portal_monitor_console_")}

    before = await samples()
    for outcome in ("responder", "viewer", "wrong_token", "expired_form"):
        assert ("portal_monitor_console_signins_total", outcome) in before  # there from the start
    async with aiohttp.ClientSession(demo.base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        page = await (await client.get("/ui/signin")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        await client.post("/ui/signin", data={"csrf": csrf, "name": "Eve", "token": "guess"})
        await client.post("/ui/signin", data={"name": "Eve", "token": "guess"})
    client = await signed_in_client(demo, VIEWER_TOKEN, "Governor Lee")
    try:
        overview = await (await client.get("/ui/")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', overview).group(1)
        await client.post("/ui/silences", data={"detector": "new_country", "expires": "1d"})
        await client.post("/ui/silences", data={"csrf": csrf, "detector": "new_country", "expires": "1d"})
    finally:
        await client.close()
    after = await samples()
    delta = {key: after[key] - before.get(key, 0) for key in after}
    assert delta[("portal_monitor_console_signins_total", "wrong_token")] == 1
    assert delta[("portal_monitor_console_signins_total", "expired_form")] == 1
    assert delta[("portal_monitor_console_signins_total", "viewer")] == 1
    assert delta[("portal_monitor_console_refusals_total", "csrf")] == 1
    assert delta[("portal_monitor_console_refusals_total", "viewer_action")] == 1
