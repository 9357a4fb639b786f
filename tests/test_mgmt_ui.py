"""The management web UI (amqp_broker/management/ui.py and static/).

In process: the page and its assets are served with their headers, every module the page
imports exists, nothing is loaded from another host, and pyproject ships every static file.

In a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`) driven by
Selenium against a broker with its management port: log in, see a queue a pika client
declared, watch its depth change as the client publishes, publish and get a message from the
queue page, purge it, log out. A screenshot of each page goes to tests/artifacts/ui/ (ignored by
git; the path is printed). Skipped, saying why, where Chromium, chromedriver or selenium is
missing.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from amqp_broker.management import ui
from amqp_broker.testing import RunningBroker, running_broker
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
STATIC = ui.STATIC_DIR
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "ui"
WAIT = 20.0  # seconds a browser step may take before the test fails (not a timing check)


# --- in process --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(Starlette(routes=ui.routes())) as c:
        yield c


def test_index_is_served_with_its_policy(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/app.js">' in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert r.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(("path", "kind"), [("/js/app.js", "javascript"),
                                            ("/js/api.js", "javascript"),
                                            ("/css/style.css", "text/css")])
def test_assets_are_served(client: TestClient, path: str, kind: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert kind in r.headers["content-type"]
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/js/nope.js", "/css/../ui.py", "/js/%2e%2e/index.html"])
def test_unknown_or_escaping_asset_paths_are_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_served_by_the_management_app() -> None:
    from amqp_broker.management.app import collect_routes

    with TestClient(Starlette(routes=collect_routes())) as c:
        r = c.get("/")
        assert r.status_code == 200 and "js/app.js" in r.text
        assert c.get("/js/app.js").status_code == 200


def _static_files() -> list[Path]:
    return sorted(p for p in STATIC.rglob("*") if p.is_file())


def test_every_imported_module_exists() -> None:
    js = [p for p in _static_files() if p.suffix == ".js"]
    assert js
    for path in js:
        for target in re.findall(r'from\s+"(\./[^"]+)"', path.read_text()):
            assert (path.parent / target).is_file(), f"{path.name} imports missing {target}"
    html = (STATIC / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        if not ref.startswith("data:"):
            assert (STATIC / ref).is_file(), f"index.html refers to missing {ref}"


def test_nothing_is_loaded_from_another_host() -> None:
    for path in _static_files():
        text = path.read_text()
        # the SVG namespace is a name, not a download
        text = text.replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), path.name


def test_pyproject_installs_every_static_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    assert "amqp_broker.management" in setuptools["packages"]
    globs = setuptools["package-data"]["amqp_broker.management"]
    package = STATIC.parent
    for path in _static_files():
        rel = path.relative_to(package).as_posix()
        assert any(fnmatch(rel, g) and rel.count("/") == g.count("/") for g in globs), \
            f"{rel} is not in [tool.setuptools.package-data]"


# --- in a browser ------------------------------------------------------------------------

def _executable(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                       else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    chromium = _executable("chromium", "chromium-browser")
    driver_path = _executable("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium "
                    "chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="amqp-ui-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    downloads = Path(profile) / "downloads"
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    # the driver path given: selenium does not go looking for (or downloading) one
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.downloads = downloads  # where the definitions export lands
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    with running_broker(management_port=free_port()) as b:
        assert b.management_url
        yield b


class Page:
    """The steps of the walk-through, with waits that fail naming what did not appear."""

    def __init__(self, driver: Any, base: str) -> None:
        from selenium.common.exceptions import (
            ElementClickInterceptedException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.d = driver
        self.base = base
        self.by = By
        # the page redraws its tables on each refresh: an element found a moment ago may be
        # gone, so each wait retries with the new one
        self.wait = WebDriverWait(driver, WAIT, ignored_exceptions=(
            StaleElementReferenceException, ElementClickInterceptedException))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def find(self, css: str) -> Any:
        return self.wait.until(lambda d: d.find_element(self.by.CSS_SELECTOR, css),
                               f"nothing matches {css}")

    def text_is(self, css: str, text: str) -> None:
        def check(d: Any) -> bool:
            els = d.find_elements(self.by.CSS_SELECTOR, css)
            return bool(els) and els[0].text.strip() == text
        self.wait.until(check, f"{css} never read {text!r}")

    def text_has(self, css: str, text: str) -> None:
        def check(d: Any) -> bool:
            return any(text in e.text for e in d.find_elements(self.by.CSS_SELECTOR, css))
        self.wait.until(check, f"{css} never showed {text!r}")

    def click(self, css: str) -> None:
        def check(d: Any) -> bool:
            d.find_element(self.by.CSS_SELECTOR, css).click()
            return True
        self.wait.until(check, f"could not click {css}")

    def fill(self, form: str, **values: str) -> None:
        """Type into the form's fields (selects: the option's value; the menus of vhosts
        and users fill in after the page loads) and submit it."""
        from selenium.webdriver.support.ui import Select

        el = self.find(f"#{form}")
        for name, value in values.items():
            field = el.find_element(self.by.NAME, name.replace("_", "-") if name == "apply_to"
                                    else name)
            if field.tag_name == "select":
                self.wait.until(lambda d, f=field, v=value: Select(f).select_by_value(v) or True,
                                f"{form}: no option {value!r} for {name}")
            elif field.get_attribute("type") == "file":
                field.send_keys(value)
            else:
                field.clear()
                field.send_keys(value)
        el.find_element(self.by.CSS_SELECTOR, "button[type=submit]").click()

    def flashed(self, text: str, kind: str = "ok") -> None:
        self.text_has(f"#flash .flash.{kind}", text)

    def attribute_is(self, css: str, name: str, value: str) -> None:
        def check(d: Any) -> bool:
            els = d.find_elements(self.by.CSS_SELECTOR, css)
            return bool(els) and els[0].get_attribute(name) == value
        self.wait.until(check, f"{css} never had {name}={value!r}")

    def go(self, page: str, ready: str) -> None:
        self.d.get(f"{self.base}#/{page}")
        self.find(ready)

    def screenshot(self, name: str) -> Path:
        # the whole page: the window is the page's height plus the window's own frame
        height, frame = self.d.execute_script(
            "return [document.documentElement.scrollHeight,"
            " window.outerHeight - window.innerHeight]")
        self.d.set_window_size(1400, max(900, min(int(height), 4000)) + int(frame))
        self.d.execute_script("window.scrollTo(0, 0)")
        path = ARTIFACTS / f"{name}.png"
        self.d.save_screenshot(str(path))
        self.d.set_window_size(1400, 1000)
        return path

    def login(self, user: str, password: str) -> None:
        # a fresh start: no login kept from an earlier test
        self.d.get(self.base)
        self.d.execute_script("sessionStorage.clear()")
        self.d.refresh()
        self.find("#login-user").send_keys(user)
        self.find("#login-pass").send_keys(password)
        self.find("#login-submit").click()

    def js_errors(self) -> list[str]:
        return [e["message"] for e in self.d.get_log("browser")
                if e["level"] == "SEVERE" and e.get("source") == "javascript"]


def _queue_depth(ch: Any, name: str) -> int:
    return int(ch.queue_declare(name, passive=True).method.message_count)


def test_login_with_a_wrong_password_is_refused(browser: Any, broker: RunningBroker) -> None:
    page = Page(browser, broker.management_url)
    page.login("guest", "not-the-password")
    page.text_has("#login-error", "Login failed")
    assert browser.find_elements(page.by.ID, "logout") == []
    assert browser.execute_script("return sessionStorage.getItem('amqp-broker-ui.login')") is None
    page.screenshot("login-refused")


def test_a_monitoring_user_sees_no_admin_pages(browser: Any, broker: RunningBroker) -> None:
    """A 401 for missing tags is shown as an error; only a failing login ends the session."""
    base = broker.management_url
    with httpx.Client(base_url=f"{base}api/", auth=("guest", "guest")) as api:
        assert api.put("users/watcher", json={"password": "pw", "tags": "monitoring"}
                       ).status_code in (201, 204)
    page = Page(browser, base)
    page.login("watcher", "pw")
    page.text_is("#whoami", "watcher")
    links = [a.get_attribute("id") for a in browser.find_elements(page.by.CSS_SELECTOR,
                                                                  "header nav a")]
    assert "nav-queues" in links and "nav-users" not in links and "nav-definitions" not in links
    browser.get(f"{base}#/users")
    page.flashed("Not administrator user", "error")
    page.find("#logout").click()
    page.find("#login-user")


def test_walk_through_queue_publish_get_purge(browser: Any, broker: RunningBroker) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    page = Page(browser, broker.management_url)
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        ch = conn.channel()
        ch.queue_declare("orders", durable=True)
        ch.queue_declare("emails")
        ch.basic_publish("", "emails", b"welcome")

        page.login("guest", "guest")
        page.find("#logout")
        page.text_is("#whoami", "guest")
        # the overview: totals from the sampled /api/overview, charts drawn
        page.text_is('#totals [data-total="Queues"] .value', "2")
        page.find("#chart-queued svg.chart")
        page.screenshot("overview")

        # the queue a client declared, its depth followed while the client publishes
        Select(page.find("#refresh")).select_by_value("2000")
        page.go("queues", '#queues tr[data-name="orders"]')
        page.text_is('#queues tr[data-name="orders"] td[data-col="messages"]', "0")
        for i in range(3):
            ch.basic_publish("", "orders", f"order {i}".encode())
        page.text_is('#queues tr[data-name="orders"] td[data-col="messages"]', "3")
        page.text_is('#queues tr[data-name="emails"] td[data-col="messages"]', "1")
        page.screenshot("queues")
        # filtering by name keeps only the matches; sorting by depth puts the deepest first
        page.find(".name-filter").send_keys("ord")
        page.text_is(".filter .count", "1 of 2")
        page.find(".name-filter").send_keys(Keys.BACKSPACE * 3)
        page.text_is(".filter .count", "2 of 2")
        total = page.find("#queues th:nth-child(8)")
        assert total.text == "Total"
        total.click()  # ascending
        page.attribute_is("#queues tbody tr:first-child", "data-name", "emails")
        total.click()  # descending
        page.attribute_is("#queues tbody tr:first-child", "data-name", "orders")

        # the queue page: publish one, get all four back (requeued), purge
        page.click('#queues tr[data-name="orders"] a')
        page.text_is('#queue-info dd[data-fact="Total"]', "3")
        page.find("#publish-payload").send_keys("hello from the UI")
        page.find("#publish-submit").click()
        page.text_is("#publish-result", "Message published.")
        assert _queue_depth(ch, "orders") == 4
        Select(page.find("#get-ackmode")).select_by_value("ack_requeue_true")
        count = page.find("#get-count")
        count.clear()
        count.send_keys("10")
        page.find("#get-submit").click()
        page.text_has("#get-result .payload", "hello from the UI")
        payloads = [e.text for e in browser.find_elements(page.by.CSS_SELECTOR,
                                                          "#get-result .payload")]
        assert payloads == ["order 0", "order 1", "order 2", "hello from the UI"]
        page.text_is('#queue-info dd[data-fact="Total"]', "4")
        page.screenshot("queue")
        page.find("#purge").click()
        browser.switch_to.alert.accept()
        page.text_has("#flash .flash.ok", "Queue orders purged.")
        page.text_is('#queue-info dd[data-fact="Total"]', "0")
        assert _queue_depth(ch, "orders") == 0

        # the other pages show what the broker has
        for name, ready in [
            ("connections", "#connections tbody tr[data-name]"),
            ("channels", "#channels tbody tr[data-name]"),
            ("exchanges", '#exchanges tr[data-name="amq.topic"]'),
            ("exchange/%2F/amq.direct", "#exchange-info dl"),
            ("users", '#users tr[data-name="guest"]'),
            ("vhosts", '#vhosts tr[data-name="/"]'),
            ("policies", "#policies"),
            ("definitions", "#export-submit"),
        ]:
            page.go(name, ready)
            page.screenshot(name.split("/")[0])

        # a queue that is not there is said so (once, not a message per refresh)
        page.go("queue/%2F/no-such-queue", ".not-found")
        page.text_is(".not-found", "There is no queue no-such-queue in virtual host /.")

        # log out: the login form again, the stored login gone, also after a reload
        page.find("#logout").click()
        page.find("#login-user")
        stored = "return sessionStorage.getItem('amqp-broker-ui.login')"
        assert browser.execute_script(stored) is None
        browser.refresh()
        page.find("#login-user")
        assert browser.find_elements(page.by.ID, "logout") == []
        page.screenshot("logged-out")
        assert page.js_errors() == []
        print(f"\nUI screenshots: {ARTIFACTS}")
    finally:
        conn.close()


def test_admin_pages_change_the_broker(browser: Any, broker: RunningBroker,
                                       tmp_path: Path) -> None:
    """Every form of the admin and exchange pages does what it says, checked through the API."""
    base = broker.management_url
    page = Page(browser, base)
    api = httpx.Client(base_url=f"{base}api/", auth=("guest", "guest"))

    def until(check: Any, what: str) -> None:
        page.wait.until(lambda _d: check(), what)

    def status(path: str) -> int:
        return api.get(path).status_code

    params = pika.URLParameters(broker.url)
    params.client_properties = {"connection_name": "ui-test-victim"}
    victim = pika.BlockingConnection(params)
    try:
        victim.channel().queue_declare("inbox")
        page.login("guest", "guest")
        page.find("#logout")

        page.go("vhosts", '#vhosts tr[data-name="/"]')
        page.fill("add-vhost", name="staging", description="for the UI test")
        page.flashed("Virtual host staging added.")
        page.find('#vhosts tr[data-name="staging"]')
        assert api.get("vhosts/staging").json()["description"] == "for the UI test"

        page.go("users", '#users tr[data-name="guest"]')
        page.fill("add-user", name="ann", password="s3cret", tags="monitoring")
        page.flashed("User ann saved.")
        assert api.get("users/ann").json()["tags"] in (["monitoring"], "monitoring")
        page.fill("set-permission", user="ann", vhost="staging", configure="^ann\\.",
                  write=".*", read=".*")
        page.flashed("Permissions of ann in staging set.")
        assert api.get("permissions/staging/ann").json()["configure"] == "^ann\\."
        page.find('#permissions tr[data-name="ann@staging"]')

        page.go("policies", "#policies")
        page.fill("add-policy", vhost="staging", name="cap", pattern="^ann\\.",
                  definition="[1]")
        page.flashed("Definition: not a JSON object", "error")
        page.fill("add-policy", vhost="staging", name="cap", pattern="^ann\\.",
                  apply_to="queues", priority="3", definition='{"max-length": 10}')
        page.flashed("Policy cap saved.")
        policy = api.get("policies/staging/cap").json()
        assert (policy["apply-to"], policy["priority"], policy["definition"]) == \
            ("queues", 3, {"max-length": 10})

        # an exchange: declared, bound to a queue from its page, published through, unbound
        page.go("exchanges", '#exchanges tr[data-name="amq.topic"]')
        page.fill("add-exchange", vhost="/", name="events", type="topic")
        page.flashed("Exchange events declared.")
        page.click('#exchanges tr[data-name="events"] a')
        page.find("#exchange-info dl")
        page.fill("add-binding", kind="q", other="inbox", routing_key="user.*")
        page.flashed("Bound.")
        page.find('#exchange-bindings tbody tr td[data-col="To"]')
        page.fill("publish", routing_key="user.created", payload="ann")
        page.text_is("#publish-result", "Message published.")
        until(lambda: api.get("queues/%2F/inbox").json()["messages"] == 1, "inbox got nothing")
        page.screenshot("exchange-bound")
        page.click("#exchange-bindings td.actions button")
        page.flashed("Binding removed.")
        assert api.get("exchanges/%2F/events/bindings/source").json() == []
        page.click("#delete-exchange")
        browser.switch_to.alert.accept()
        page.flashed("Exchange events deleted.")
        assert status("exchanges/%2F/events") == 404

        # a connection closed from the list
        name = next(c["name"] for c in api.get("connections").json()
                    if c["client_properties"].get("connection_name") == "ui-test-victim")
        page.go("connections", f'#connections tr[data-name="{name}"]')
        page.click(f'#connections tr[data-name="{name}"] td.actions button')
        browser.switch_to.alert.accept()
        page.flashed(f"Connection {name} closed.")
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker):
            victim.process_data_events(time_limit=5)

        # definitions: the export downloads a file the import takes back
        page.go("definitions", "#export-submit")
        page.fill("export")
        page.flashed("Definitions downloaded.")
        until(lambda: any(browser.downloads.glob("definitions_*.json")), "no download")
        exported = json.loads(next(browser.downloads.glob("definitions_*.json")).read_text())
        assert {"name": "staging"} in [{"name": v["name"]} for v in exported["vhosts"]]
        upload = tmp_path / "more.json"
        upload.write_text(json.dumps({"queues": [{"name": "imported", "vhost": "staging",
                                                  "durable": True, "auto_delete": False,
                                                  "arguments": {}}]}))
        page.fill("import", file=str(upload), vhost="")
        page.flashed("Definitions imported from more.json.")
        assert status("queues/staging/imported") == 200

        # and the deletions
        page.go("users", '#users tr[data-name="ann"]')
        page.click('#users tr[data-name="ann"] td.actions button')
        browser.switch_to.alert.accept()
        page.flashed("User ann deleted.")
        assert status("users/ann") == 404
        page.go("vhosts", '#vhosts tr[data-name="staging"]')
        page.click('#vhosts tr[data-name="staging"] td.actions button')
        browser.switch_to.alert.accept()
        page.flashed("Virtual host staging deleted.")
        assert status("vhosts/staging") == 404
        assert page.js_errors() == []
    finally:
        if victim.is_open:
            victim.close()
        api.close()


def test_long_queue_lists_are_paged_by_the_broker(browser: Any, broker: RunningBroker) -> None:
    """The queues page asks for one page (RabbitMQ's page/page_size/name/sort parameters)."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        ch = conn.channel()
        for i in range(130):
            ch.queue_declare(f"bulk.{i:03d}")
        ch.basic_publish("", "bulk.042", b"x")
        page = Page(browser, broker.management_url)
        page.login("guest", "guest")
        page.find("#logout")
        page.go("queues", '#queues tr[data-name="bulk.000"]')
        page.text_is(".pager span", "page 1 of 2")
        rows = browser.find_elements(page.by.CSS_SELECTOR, "#queues tbody tr")
        assert len(rows) == 100
        page.click(".pager .next-page")
        page.text_is(".pager span", "page 2 of 2")
        page.find('#queues tr[data-name="bulk.129"]')
        # a filter goes back to the first page of the matches
        page.find(".name-filter").send_keys("bulk.04")
        page.text_is(".filter .count", f"10 of {130 + len(_other_queues(broker))}")
        page.wait.until(lambda d: not d.find_element(page.by.CSS_SELECTOR, ".pager")
                        .is_displayed(), "the pager stays for a single page")
        # sorted by depth, deepest first, by the broker
        total = page.find("#queues th:nth-child(8)")
        total.click()
        total.click()
        page.attribute_is("#queues tbody tr:first-child", "data-name", "bulk.042")
        page.screenshot("queues-paged")
    finally:
        conn.close()


def _other_queues(broker: RunningBroker) -> list[str]:
    with httpx.Client(base_url=f"{broker.management_url}api/", auth=("guest", "guest")) as api:
        return [q["name"] for q in api.get("queues").json() if not q["name"].startswith("bulk.")]
