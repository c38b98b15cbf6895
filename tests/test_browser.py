"""The course as students open it, in a real browser: Debian's chromium driven by Playwright.

- live JupyterLab: each chapter with a panel, Run All, every control driven by keyboard and
  mouse; the panel's picture and text must change, and no kernel or page error may occur;
- the offline site (`make course`'s pages): opened from disk with every network request
  refused; titles, the table of contents, math and the static panels must work.
Screenshots go to build/screenshots/. Skipped, with the reason, where no chromium exists
(`make test` installs Debian's where it can).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require_mirror

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PANEL_CHAPTERS = ("01_svd_basics", "05_sparsity", "07_ablations")
# As root in a container chromium needs --no-sandbox; the network flags keep it from calling home.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

if CHROMIUM is None and os.environ.get("CI"):
    pytest.fail("no chromium in CI: `make test` installs Debian's (apt-get install chromium)", pytrace=False)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


class Watch:
    """A page's uncaught script errors and the network requests it tried."""

    def __init__(self, page, allow_network: str | None = None):
        self.errors, self.requests = [], []
        page.on("pageerror", lambda e: self.errors.append(str(e)))

        def route(r):
            url = r.request.url
            if url.startswith("file://") or url.startswith("data:") or (allow_network and url.startswith(allow_network)):
                return r.continue_()
            self.requests.append(url)
            r.abort()
        page.route("**/*", route)


def _changes(page, read, act, timeout=30.0, settle=1.5):
    """Do `act`, then wait until the panel's picture and text both differ from before and have
    stayed the same for `settle` seconds (a kernel may redraw more than once); returns both states."""
    before = read()
    act()
    deadline = time.time() + timeout
    last, since = before, time.time()
    while time.time() < deadline:
        now = read()
        if now != last:
            last, since = now, time.time()
        elif all(a != b for a, b in zip(now, before)) and time.time() - since >= settle:
            return before, now
        page.wait_for_timeout(200)
    raise AssertionError(f"the panel did not change within {timeout:.0f} s: text still {last[1][:100]!r}"
                         if last[1] == before[1] else "the panel's text changed but not its picture")


# ------------------------------------------------------------------ the offline site
@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from dprp_lib.course import run_course

    require_mirror()  # chapters 05 and 07 read runs on the CIFAR-10 mirror
    out = tmp_path_factory.mktemp("course")
    # The panel chapters, and 02 for its math.
    report = run_course(mode="quick", out=out, only=["02"] + [c[:2] for c in PANEL_CHAPTERS])
    assert all(r["status"] == "ok" for r in report), report
    return out / "html", report


def test_offline_pages_have_titles_contents_math_and_working_panels(browser, site):
    html_dir, report = site
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    watch = Watch(page)
    typeset = {}
    page.goto((html_dir / "index.html").as_uri())
    links = page.locator("a").evaluate_all("els => els.map(e => [e.getAttribute('href'), e.textContent])")
    assert [href for href, _ in links] == [f"{r['chapter']}.html" for r in report]  # chapters, in order
    page.screenshot(path=str(SHOTS / "site-index.png"))
    for r in report:
        page.goto((html_dir / f"{r['chapter']}.html").as_uri())
        page.wait_for_load_state("load")
        assert page.title() == r["title"] and not r["title"].startswith("Notebook")
        source = (html_dir / f"{r['chapter']}.html").read_text()
        assert "/work/" not in source and str(ROOT) not in source  # no path of the building machine
        if "$" in source.split("<body", 1)[1]:  # math, when the chapter has some, is typeset locally
            page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30000)
            page.evaluate("MathJax.startup.promise")
            typeset[r["chapter"]] = page.locator("mjx-container").count()
        if not page.locator(".dprp-panel").count():
            page.screenshot(path=str(SHOTS / f"site-{r['chapter']}.png"), full_page=False)
            continue
        panel = page.locator(".dprp-panel").first
        assert "Precomputed panel" in panel.inner_text()
        picture = panel.locator(".dprp-panel-picture")
        info = panel.locator(".dprp-panel-info")
        read = lambda: (picture.get_attribute("src")[-200:], info.inner_text())  # noqa: E731
        for control in panel.locator("select, input[type=range]").all():
            if control.evaluate("e => e.tagName") == "SELECT":
                at_end = control.evaluate("e => e.selectedIndex === e.options.length - 1")
                _changes(page, read, lambda: (control.focus(), page.keyboard.press("Home" if at_end else "End")))
                _changes(page, read, lambda: control.select_option(index=1 if at_end else 0))  # as a mouse choice
            else:
                at_end = control.evaluate("e => Number(e.value) === Number(e.max)")
                _changes(page, read, lambda: (control.focus(), page.keyboard.press("Home" if at_end else "End")))
                box = control.bounding_box()
                x = box["x"] + (box["width"] - 3 if at_end else 3)  # back to where it started, by mouse
                _changes(page, read, lambda: page.mouse.click(x, box["y"] + box["height"] / 2))
        page.screenshot(path=str(SHOTS / f"site-{r['chapter']}.png"), full_page=False)
    assert typeset.get("02_svd_layers", 0) > 0, f"no formula was typeset: {typeset}"
    assert watch.errors == [], watch.errors
    assert watch.requests == [], f"the pages tried the network: {watch.requests}"


# ------------------------------------------------------------------ live JupyterLab
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on the loopback address over a copy of the chapters (the tracked notebooks stay
    untouched), with autosave off; the library, results and data are linked in."""
    require_mirror()
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    for name in PANEL_CHAPTERS:
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", root / "notebooks")
    for linked in ("dprp_lib", "results", "data"):
        (root / linked).symlink_to(ROOT / linked)
    settings = root / "settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    news = root / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port, token = _free_port(), "dprp-browser-test"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={root / 'settings'}", f"--LabApp.workspaces_dir={root / 'workspaces'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the notebook's inline backend
    log = open(root / "lab.log", "w")
    server = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited: {(root / 'lab.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    yield url, token, root
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def _run_all(page):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


@pytest.mark.parametrize("chapter", PANEL_CHAPTERS)
def test_live_panels_respond_in_jupyterlab(browser, lab, chapter):
    url, token, root = lab
    before_run = (ROOT / "notebooks" / f"{chapter}.ipynb").read_bytes()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    watch = Watch(page, allow_network=url)
    # A workspace of its own, reset: only this notebook open, none restored from an earlier test.
    page.goto(f"{url}/lab/workspaces/{chapter}/tree/notebooks/{chapter}.ipynb?reset&token={token}")
    page.locator(".jp-Notebook").first.wait_for(timeout=90000)
    # JupyterLab may ask which kernel to start: the notebook's own (the dialog's default).
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(timeout=10000)
        dialog.locator("button", has_text=re.compile(r"^Select$")).click()
    except playwright.Error:
        pass  # no dialog: the kernel started by itself
    # Run All only once the kernel is connected and idle, or JupyterLab may drop the request.
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=120000)
    _run_all(page)
    panel = page.locator(".jupyter-widgets.widget-vbox").last
    try:
        panel.wait_for(timeout=240000)
        page.wait_for_function("() => ![...document.querySelectorAll('.jp-InputPrompt')]"
                               ".some(p => p.textContent.includes('[*]'))", timeout=240000)
    except playwright.Error:
        page.screenshot(path=str(SHOTS / f"lab-{chapter}-timeout.png"), full_page=True)
        raise
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert tracebacks == [], tracebacks[:1]

    picture = panel.locator("img.widget-image").first
    info = panel.locator(".widget-html-content").first
    read = lambda: (picture.get_attribute("src"), info.inner_text())  # noqa: E731
    sliders = panel.locator(".noUi-handle").all()
    for handle in sliders:  # keyboard, then mouse on the track
        _changes(page, read, lambda: (handle.focus(), page.keyboard.press("ArrowRight")))
        track = panel.locator(".noUi-target").first.bounding_box()
        _changes(page, read, lambda: page.mouse.click(track["x"] + 2, track["y"] + track["height"] / 2))
    for select in panel.locator("select").all():  # a dropdown: keyboard, then a choice
        n = select.locator("option").count()
        if n > 1:
            at_end = select.evaluate("e => e.selectedIndex === e.options.length - 1")
            _changes(page, read, lambda: (select.focus(), page.keyboard.press("Home" if at_end else "End")))
            _changes(page, read, lambda: select.select_option(index=1 if at_end else 0))
    assert sliders or panel.locator("select").count(), "the panel has no control"
    page.screenshot(path=str(SHOTS / f"lab-{chapter}.png"))
    assert watch.errors == [], watch.errors
    assert (ROOT / "notebooks" / f"{chapter}.ipynb").read_bytes() == before_run
    page.close()
