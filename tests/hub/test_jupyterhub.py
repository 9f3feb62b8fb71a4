"""A class on JupyterHub, end to end: the documented examples/jupyterhub_config.py, run for real.

JupyterHub (dummy authenticator, simple spawner), configurable-http-proxy from
node_modules, the class service as a managed Hub service, two students
(alice, bob) and an instructor (teacher, a Hub admin), on the session's
devnet (anvil, a coordinator, two providers). Each student's server is
started through the Hub API; their `%%gensyn_train` cells run in kernels
started through the proxy (the Jupyter REST API and the kernel's websocket),
so a kernel has exactly the environment the spawner gives a student.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import HTTPProvider, Web3

from gensyn_jupyter.chain import Market, TaskStatus, dev_accounts
from gensyn_jupyter.protocol import task_key

from .._devnet import Devnet
from ._hub import PROXY, REPO, CellRun, Hub, RemoteKernel, running_hub

pytestmark = pytest.mark.timeout(480)  # the first test also waits for the Hub and 3 servers

STUDENTS = ("alice", "bob")
SETUP = (
    "%load_ext gensyn_jupyter\n"
    "import torch\n"
    "torch.manual_seed(0)\n"
    "model = torch.nn.Linear(4, 1)\n"
    "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    "X = torch.ones(8, 4)\n"
)
TRAIN = (
    "%%gensyn_train --max-seconds 120 -o run\n"
    "for step in range(20):\n"
    "    loss = model(X).pow(2).mean()\n"
    "    opt.zero_grad(); loss.backward(); opt.step()\n"
)
SHOW = "print(run.task_id, run.status, float(model(X).pow(2).mean()) < 0.01)"


def _require_tools() -> None:
    missing = []
    if importlib.util.find_spec("jupyterhub") is None:
        missing.append("jupyterhub (pip install -e '.[dev]')")
    if not PROXY.exists():
        missing.append("configurable-http-proxy (npm install)")
    if missing:
        message = "the JupyterHub test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Classroom:
    hub: Hub
    devnet: Devnet
    market: Market
    tokens: dict[str, str]
    kernels: dict[str, RemoteKernel]
    runs: dict[str, CellRun] = field(default_factory=dict)
    task_ids: dict[str, str] = field(default_factory=dict)

    def service(self, method: str, path: str, user: str, **kwargs: Any) -> httpx.Response:
        """Call the class service through the proxy with ``user``'s Hub token."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}", **kwargs.pop("headers", {})}
        url = f"{self.hub.url}/services/gensyn/{path}"
        return httpx.request(method, url, headers=headers, timeout=30, **kwargs)

    def coordinator_task(self, task_id: str, user: str) -> dict[str, Any]:
        """The coordinator's task as its owner ``user`` reads it (through the class service,
        which holds the student's session: the coordinator shows a task to its owner only)."""
        reply = self.service("GET", f"v1/tasks/{task_id}", user)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body


@pytest.fixture(scope="module")
def classroom(devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Classroom]:
    _require_tools()
    info = httpx.get(f"{devnet.url}/v1/chain", timeout=10).json()
    market = Market(w3=Web3(HTTPProvider(info["rpc_url"])), address=info["market"])
    state = tmp_path_factory.mktemp("hub")
    with running_hub(state, {"GENSYN_HOME": str(devnet.home)}) as hub:
        tokens = {user: hub.user_token(user) for user in (*STUDENTS, "teacher")}
        hub.start_servers((*STUDENTS, "teacher"))  # the teacher's lab: the panel's Class section
        kernels: dict[str, RemoteKernel] = {}
        try:
            for user in STUDENTS:
                kernels[user] = RemoteKernel(hub, user, tokens[user])
                hub.track()
            room = Classroom(hub=hub, devnet=devnet, market=market, tokens=tokens, kernels=kernels)
            for user in STUDENTS:
                setup = kernels[user].run(SETUP)
                assert setup.status == "ok", setup.text

            # Both students train at once, as a class does (two providers).
            def train(user: str) -> None:
                try:
                    room.runs[user] = kernels[user].run(TRAIN)
                except Exception as exc:  # reported below, with the Hub's log
                    room.runs[user] = CellRun(status="exception", error=repr(exc))

            threads = [threading.Thread(target=train, args=(user,)) for user in STUDENTS]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=200)
            for user in STUDENTS:
                run = room.runs.get(user)
                assert run is not None and run.status == "ok", (run.text if run else "") + hub.log()
                shown = kernels[user].run(SHOW)
                assert shown.status == "ok", shown.text
                task_id, status, trained = shown.stdout.split()
                assert status == "settled" and trained == "True", shown.text
                room.task_ids[user] = task_id
            yield room
        finally:
            for kernel in kernels.values():
                kernel.close()


def test_each_students_cell_runs_on_that_students_own_account(classroom: Classroom) -> None:
    addresses = {}
    for user in STUDENTS:
        me = classroom.service("GET", "api/me", user)
        assert me.status_code == 200, me.text
        addresses[user] = me.json()["address"]
        task = classroom.coordinator_task(classroom.task_ids[user], user)
        assert task["account"] == addresses[user]
        assert task["payment"]["order"]["submitter"] == addresses[user]
        payment = task["payment"]
        assert payment["outcome"] == "finalized" and payment["provider_paid_wei"] > 0
        assert task["provider_name"], task
        assert classroom.task_ids[user] in [t["id"] for t in me.json()["tasks"]]
    # Two accounts, neither of them the devnet's own user (dev key 0).
    assert len(set(addresses.values())) == 2
    assert dev_accounts(1)[0].address not in addresses.values()
    # What the cell says: approved by the class service, nothing for the student to sign.
    said = classroom.runs["alice"].text
    assert f"submitted to {classroom.hub.url}/services/gensyn" in said, said
    awaiting = (
        "awaiting approval by the class service: at most 0.00012 ETH from your class account "
        f"{addresses['alice']}, within the budget your instructor set"
    )
    assert awaiting in said, said
    assert "gensyn approve" not in said and "settled: provider paid" in said, said


def _me_settled(classroom: Classroom, user: str, timeout: float = 60) -> dict[str, Any]:
    """The user's own view once nothing of theirs is held in escrow any more."""
    deadline = time.monotonic() + timeout
    while True:
        me: dict[str, Any] = classroom.service("GET", "api/me", user).json()
        if me["held_wei"] == 0:
            return me
        if time.monotonic() > deadline:
            raise AssertionError(f"{user}'s escrow still held after {timeout} s: {me}")
        time.sleep(0.5)


def test_a_task_over_the_students_budget_is_refused_naming_it_and_nothing_is_paid(
    classroom: Classroom,
) -> None:
    bob = classroom.kernels["bob"]
    before = _me_settled(classroom, "bob")
    # bob's budget (0.0005 ETH) covers a 120 s task, not a 3600 s one (0.0036 ETH).
    refused = bob.run(
        "%%gensyn_train -o big\n"
        "for step in range(5):\n"
        "    loss = model(X).pow(2).mean()\n"
        "    opt.zero_grad(); loss.backward(); opt.step()\n"
    )
    assert refused.status == "error"
    assert "over your class budget" in refused.text, refused.text
    assert "your budget of 0.0005 ETH" in refused.text, refused.text
    assert "nothing was paid" in refused.text
    match = re.search(r"Task (t-[0-9a-f]+) was cancelled", refused.text)
    assert match, refused.text
    task = classroom.coordinator_task(match.group(1), "bob")
    assert task["state"] == "cancelled" and not task["payment"]["funded"]
    assert classroom.market.task(task_key(task["id"])).status == TaskStatus.NONE  # no escrow
    after = classroom.service("GET", "api/me", "bob").json()
    assert after["spent_wei"] + after["held_wei"] == before["spent_wei"] + before["held_wei"]
    # alice, with the default budget (0.1 ETH), could have run it: the cap is bob's own.
    assert classroom.service("GET", "api/me", "alice").json()["left_wei"] > 36 * 10**14


def test_a_student_cannot_see_or_cancel_another_students_task(classroom: Classroom) -> None:
    bobs = classroom.task_ids["bob"]
    for method, path in (
        ("GET", f"v1/tasks/{bobs}"),
        ("GET", f"v1/tasks/{bobs}/events?format=json"),
        ("POST", f"v1/tasks/{bobs}/cancel"),
    ):
        reply = classroom.service(method, path, "alice")
        assert reply.status_code == 404, (method, path, reply.text)
        assert reply.json()["detail"] == f"task {bobs} not found among your tasks"
    listed = classroom.service("GET", "v1/tasks", "alice", params={"limit": 100})
    assert [t["id"] for t in listed.json()] == [classroom.task_ids["alice"]]
    # From alice's notebook, with the credentials her kernel was given.
    cancel = classroom.kernels["alice"].run(f"%gensyn cancel {bobs}")
    assert cancel.status == "error" and "not found among your tasks" in cancel.text, cancel.text
    assert classroom.coordinator_task(bobs, "bob")["state"] == "settled"
    # nor straight from the coordinator, without bob's session
    direct = httpx.get(f"{classroom.devnet.url}/v1/tasks/{bobs}", timeout=10)
    assert direct.status_code == 404, direct.text
    # Without a Hub token the service tells nothing about tasks.
    anonymous = httpx.get(f"{classroom.hub.url}/services/gensyn/v1/tasks/{bobs}", timeout=10)
    assert anonymous.status_code == 401
    # bob himself sees his task (the 404 above is about alice, not the task).
    assert classroom.service("GET", f"v1/tasks/{bobs}", "bob").status_code == 200


def _class_view(classroom: Classroom, settled: bool, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        reply = classroom.service("GET", "api/class", "teacher")
        assert reply.status_code == 200, reply.text
        view: dict[str, Any] = reply.json()
        students = {s["user"]: s for s in view["students"]}
        if not settled or all(students[u]["spent_wei"] > 0 for u in STUDENTS):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"spend not settled in {timeout} s: {view}")
        time.sleep(0.5)


def test_the_instructor_sees_every_students_tasks_and_spend_and_students_do_not(
    classroom: Classroom,
) -> None:
    view = _class_view(classroom, settled=True)
    students = {s["user"]: s for s in view["students"]}
    assert set(STUDENTS) <= set(students)
    for user in STUDENTS:
        entry = students[user]
        task = next(t for t in entry["tasks"] if t["id"] == classroom.task_ids[user])
        paid = classroom.coordinator_task(task["id"], user)["payment"]["provider_paid_wei"]
        assert task["state"] == "settled" and task["verification"] == "trusted"
        assert task["paid_wei"] == paid and entry["spent_wei"] >= paid
        assert entry["held_wei"] == 0
        assert entry["left_wei"] == entry["budget_wei"] - entry["spent_wei"]
    assert students["bob"]["budget_wei"] == 5 * 10**14
    assert students["alice"]["budget_wei"] == 10**17

    denied = classroom.service("GET", "api/class", "alice")
    assert denied.status_code == 403 and "not an instructor" in denied.json()["detail"]
    # Funding an account ahead of class is for instructors too.
    enrol = classroom.service("POST", "api/class/students/carol", "alice")
    assert enrol.status_code == 403 and "not an instructor" in enrol.json()["detail"]


def test_the_instructor_opens_the_class_view_in_a_browser(classroom: Classroom) -> None:
    """Log in to the Hub with its form, then the service's OAuth flow, as a browser does."""
    hub = classroom.hub.url
    with httpx.Client(base_url=hub, timeout=30, follow_redirects=False) as browser:
        browser.get("/hub/login")
        login = browser.post(
            "/hub/login",
            data={"username": "teacher", "password": "x", "_xsrf": browser.cookies["_xsrf"]},
        )
        assert login.status_code == 302, login.text
        url = "/services/gensyn/api/class"
        for _ in range(8):
            reply = browser.get(url, headers={"Accept": "text/html"})
            if reply.status_code != 302:
                break
            url = reply.headers["location"].removeprefix(hub)
        assert reply.status_code == 200, (url, reply.text)
        assert {s["user"] for s in reply.json()["students"]} >= set(STUDENTS)
        # The login cookie reads pages; it does not act (a page of the Hub's origin could).
        acting = browser.post(f"/services/gensyn/v1/tasks/{classroom.task_ids['bob']}/cancel")
        assert acting.status_code == 401, acting.text


def _panel_api(classroom: Classroom, user: str, path: str) -> httpx.Response:
    """What the Gensyn panel in ``user``'s JupyterLab reads: their server's /gensyn/api/..."""
    url = f"{classroom.hub.url}/user/{user}/gensyn/api/{path}"
    headers = {"Authorization": f"token {classroom.tokens[user]}"}
    return httpx.get(url, headers=headers, timeout=30)


def test_the_panel_shows_the_instructor_the_class_and_a_student_their_own_budget(
    classroom: Classroom,
) -> None:
    _class_view(classroom, settled=True)  # spend counted
    teacher = _panel_api(classroom, "teacher", "class")
    assert teacher.status_code == 200, teacher.text
    body = teacher.json()
    assert body["service"] == f"{classroom.hub.url}/services/gensyn"
    assert body["user"] == "teacher" and body["instructor"] is True
    students = {s["user"]: s for s in body["class"]["students"]}
    for user in STUDENTS:
        tasks = {t["id"]: t for t in students[user]["tasks"]}
        task = tasks[classroom.task_ids[user]]
        assert task["state"] == "settled" and task["verification"] == "trusted", task
        assert students[user]["spent_wei"] > 0
    assert students["bob"]["budget_wei"] == 5 * 10**14

    alice = _panel_api(classroom, "alice", "class")
    assert alice.status_code == 200, alice.text
    mine = alice.json()
    assert mine["user"] == "alice" and mine["instructor"] is False and mine["class"] is None
    assert classroom.task_ids["alice"] in [t["id"] for t in mine["me"]["tasks"]]
    assert mine["me"]["budget_wei"] == 10**17

    # The Tasks section in a student's lab: their own tasks (it answered 401 before).
    listed = _panel_api(classroom, "alice", "tasks")
    assert listed.status_code == 200, listed.text
    assert [t["id"] for t in listed.json()] == [classroom.task_ids["alice"]]


@pytest.fixture(scope="module")
def hub_browser() -> Iterator[Any]:
    """Headless chromium for this module (closed with it: playwright's sync loop is per thread)."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists() and shutil.which("chromium") is None:
        pytest.fail(
            "Debian chromium is missing: `make test` installs it (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(chromium), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


def test_in_jupyterlab_the_instructor_sees_the_class_section_and_a_student_does_not(
    classroom: Classroom, hub_browser: Any
) -> None:
    """Log in to the Hub in a browser, open the Gensyn panel in one's own JupyterLab."""
    from playwright.sync_api import expect

    artifacts = REPO / "tests" / "ui" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    _class_view(classroom, settled=True)
    for user in ("teacher", "alice"):
        context = hub_browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.goto(f"{classroom.hub.url}/hub/login?next=/user/{user}/lab")
            page.locator("#username_input").fill(user)
            page.locator("#password_input").fill("any")
            page.locator("#login_submit").click()
            page.wait_for_url(f"**/user/{user}/lab**", timeout=90_000)
            tab = page.locator(".jp-SideBar.jp-mod-left").get_by_title("Gensyn", exact=True)
            expect(tab).to_be_visible(timeout=90_000)
            panel = page.locator("#gensyn-panel")
            if not panel.is_visible():
                tab.click()
            section = panel.locator("[data-testid=gensyn-class]")
            expect(section).to_be_visible(timeout=30_000)
            students = section.locator("[data-testid=gensyn-class-student]")
            if user == "teacher":
                expect(section).to_have_attribute("data-role", "instructor")
                expect(section.locator("h3")).to_have_text("Class")
                for student in STUDENTS:
                    item = students.and_(page.locator(f"[data-user={student}]"))
                    task = item.locator(f"[data-task-id={classroom.task_ids[student]}]")
                    expect(task).to_have_attribute("data-verification", "trusted")
                    expect(task).to_contain_text("settled")
                expect(students.and_(page.locator("[data-user=bob]"))).to_contain_text(
                    "of 0.0005 ETH spent"
                )
            else:
                expect(section).to_have_attribute("data-role", "student")
                expect(section.locator("[data-testid=gensyn-class-me]")).to_contain_text("alice: ")
                expect(students).to_have_count(0)
                mine = panel.locator(
                    f"[data-testid=gensyn-task][data-task-id={classroom.task_ids['alice']}]"
                )
                expect(mine).to_be_visible(timeout=30_000)
            page.screenshot(path=str(artifacts / f"hub-class-{user}.png"))
        finally:
            context.close()
