"""The course as students open it, in a real browser: Debian's chromium driven by Playwright.

- live JupyterLab: each chapter with a panel, Run All, every control driven by keyboard and
  mouse; the panel's picture and text must change, and no kernel or page error may occur;
- the offline site (`make course`'s Jupyter Book): opened from disk with every request that is
  not a file of the site refused and recorded (none may occur); the sidebar lists all nine
  chapters, Next and Previous walk the course, search finds a chapter's word, math is typeset by
  the local MathJax, and each precomputed panel responds to its controls.
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
    """The course site as `make course` builds it (a Jupyter Book), with all nine chapters: the
    panel chapters executed here in quick mode (their panels' views live in the executed widget
    state), the others as stored in notebooks/ (executed in quick mode too; the site renders
    whatever build/notebooks/ holds)."""
    from dprp_lib.course.build import chapters, run_course

    require_mirror()  # chapters 05 and 07 read runs on the CIFAR-10 mirror
    out = tmp_path_factory.mktemp("course")
    (out / "notebooks").mkdir()
    for nb in chapters():
        shutil.copy(nb, out / "notebooks")
    report = run_course(mode="quick", out=out, only=[c[:2] for c in PANEL_CHAPTERS])
    # A chapter that fails is its panel test's failure (the site is built all the same).
    status = {r["chapter"]: r["status"] for r in report}
    return out / "html", [(nb.stem, title(nb)) for nb in chapters()], status


def title(path):
    from dprp_lib.course.build import _read, title as chapter_title

    return chapter_title(_read(path))


def _check(watch):
    assert watch.errors == [], watch.errors
    assert watch.requests == [], f"the pages tried the network: {watch.requests}"


def test_site_sidebar_lists_every_chapter_and_previous_next_walk_the_course(browser, site):
    html_dir, chapters, _ = site
    assert len(chapters) == 9
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    page.goto((html_dir / "index.html").as_uri())
    sidebar = page.locator("nav.bd-docs-nav ul.bd-sidenav:not(.bd-sidenav__home-link) a.reference")
    links = sidebar.evaluate_all("els => els.map(e => [e.getAttribute('href'), e.textContent.trim()])")
    assert links == [[f"{stem}.html", name] for stem, name in chapters]  # all nine, in order, titled
    home = page.locator("article").inner_text()
    assert all(name in home for _, name in chapters)  # the home page's table lists them too
    page.screenshot(path=str(SHOTS / "site-index.png"))
    # Next from the home page through every chapter, then back one with Previous.
    for stem, name in chapters:
        page.locator("a.right-next").click()
        page.wait_for_load_state("load")
        assert page.url.endswith(f"/{stem}.html") and page.title().startswith(name), (page.url, page.title())
        assert page.locator("nav.bd-docs-nav li.current > a").first.text_content().strip() == name
        source = (html_dir / f"{stem}.html").read_text()
        assert "/work/" not in source and str(ROOT) not in source  # no path of the building machine
    assert page.locator("a.right-next").count() == 0  # the last chapter
    page.locator("a.left-prev").click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/{chapters[-2][0]}.html")
    page.locator("a.left-prev").wait_for()
    # A sidebar link from there to the first chapter.
    page.locator("nav.bd-docs-nav a.reference", has_text=chapters[0][1]).click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/{chapters[0][0]}.html")
    _check(watch)
    page.close()


def test_site_search_finds_a_word_from_a_chapter(browser, site):
    html_dir, chapters, _ = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    page.goto((html_dir / "index.html").as_uri())
    page.keyboard.press("Control+k")  # the theme's search dialog, as a reader opens it
    field = page.locator("#pst-search-dialog input[name=q]")
    field.wait_for()
    field.fill("Eckart")  # Eckart–Young: chapter 01
    field.press("Enter")
    page.wait_for_url("**/search.html?q=Eckart*")
    results = page.locator("#search-results ul.search li a")
    results.first.wait_for(timeout=30000)
    hrefs = results.evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert any(h.startswith(f"{chapters[0][0]}.html") for h in hrefs), hrefs
    page.wait_for_function("!document.querySelector('#search-results').textContent.includes('Searching')",
                           timeout=30000)
    page.screenshot(path=str(SHOTS / "site-search.png"))
    results.filter(has_text=chapters[0][1]).first.click()  # a result opens its chapter
    page.wait_for_load_state("load")
    assert page.url.split("#")[0].split("?")[0].endswith(f"/{chapters[0][0]}.html")
    _check(watch)
    page.close()


def test_site_math_is_typeset_by_the_local_mathjax(browser, site):
    html_dir, _, _ = site  # chapter 02 as stored: its formulas are in its markdown
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    page.goto((html_dir / "02_svd_layers.html").as_uri())
    page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30000)
    page.evaluate("MathJax.startup.promise")
    src = page.evaluate("MathJax.version + ' ' + document.querySelector('script[src*=mathjax]').src")
    assert src.startswith("3.2.2 file://") and "/_static/mathjax-3.2.2-tex-svg-full.js" in src, src
    assert page.locator("mjx-container svg").count() > 10  # formulas typeset as SVG
    assert page.locator("mjx-merror").count() == 0, page.locator("mjx-merror").first.text_content()
    page.locator("mjx-container").nth(3).scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "site-math.png"))
    _check(watch)
    page.close()


@pytest.mark.parametrize("chapter", PANEL_CHAPTERS)
def test_site_precomputed_panels_respond_to_their_controls(browser, site, chapter):
    html_dir, _, status = site
    assert status[chapter] == "ok", f"the chapter did not run: {status[chapter]}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    page.goto((html_dir / f"{chapter}.html").as_uri())
    page.wait_for_load_state("load")
    panel = page.locator(".dprp-panel").first
    assert "Precomputed panel" in panel.inner_text()
    panel.scroll_into_view_if_needed()
    picture = panel.locator(".dprp-panel-picture")
    info = panel.locator(".dprp-panel-info")
    read = lambda: (picture.get_attribute("src")[-200:], info.inner_text())  # noqa: E731
    controls = panel.locator("select, input[type=range]").all()
    assert controls, "the panel has no control"
    for control in controls:
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
    panel.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / f"site-{chapter}.png"))
    _check(watch)
    page.close()


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
