"""`dprp course`'s site: a Jupyter Book of executed chapters, built offline and without executing them.

Built here from two small notebooks written by the test (no kernel, no data), so it runs anywhere in
seconds; tests/test_browser.py opens the site of real chapters in chromium.
"""
from __future__ import annotations

import re
import weakref

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from dprp_lib.course import build as course

pytest.importorskip("jupyter_book", reason="the course extra is not installed (pip install -e '.[course]')")

PANEL_HTML = ('<div class="dprp-panel" id="dprp-panel-test"><div class="dprp-panel-info">view A</div>'
              '<img class="dprp-panel-picture" src="data:image/png;base64,AAAA"></div>')


def _chapter(path, heading):
    nb = new_notebook(cells=[
        new_markdown_cell(f"# {heading}\n\nThe energy rule keeps $\\sum_i s_i^2$ and a zanzibarword.\n\n"
                          "$$\\|M - M_k\\|_F = \\sqrt{\\sum_{i>k} s_i^2}$$"),
        new_markdown_cell("## Your turn\n\n### BEGIN SOLUTION\nA worked answer.\n### END SOLUTION"),
        new_code_cell("panel", execution_count=1, outputs=[new_output("display_data", data={
            "text/plain": "[interactive panel: RankExplorer; run this cell with a live kernel (make lab) to use it]",
            "text/html": PANEL_HTML,
            "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
        })]),
        # the chapters' test plumbing (save_metrics), kept off the page
        new_code_cell("_ = save_metrics('plumbingword')", metadata={"tags": ["remove-cell"]}),
    ])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                           "version_minor": 0}}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["papermill"] = {"parameters": {"MODE": "quick"}, "duration": 12.3, "exception": None}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


class _Thing:
    pass


# A dead weak proxy, held by this process while it builds the site (see the last test).
_thing = _Thing()
DEAD = weakref.proxy(_thing)
del _thing


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    _chapter(out / "notebooks" / "01_first.ipynb", "01 · First chapter")
    _chapter(out / "notebooks" / "02_second.ipynb", "02 · Second chapter")  # executed by an earlier run
    report = [{"chapter": "01_first", "title": "01 · First chapter", "mode": "quick", "seconds": 7.0, "status": "ok"}]
    index = course.write_site(out, report)
    return out, index


def test_site_has_index_a_page_a_chapter_and_search(site):
    out, index = site
    html = out / "html"
    assert index == html / "index.html" and index.is_file()
    for page in ("01_first.html", "02_second.html", "search.html", "searchindex.js"):
        assert (html / page).is_file(), page
    assert "zanzibarword" in (html / "searchindex.js").read_text()  # the chapters' words are indexed
    home = index.read_text()
    nav = home.split("bd-docs-nav", 1)[1].split("</nav>", 1)[0]  # the sidebar's table of contents
    assert re.findall(r'href="([^"#]+)"', nav) == ["01_first.html", "02_second.html"]
    assert "7 s" in home and "12 s" in home  # run time: this run's report, else papermill's record


def _prev_next(page: str) -> tuple:
    link = lambda cls: re.findall(rf'<a class="{cls}"\s+href="([^"]+)"', page)  # noqa: E731
    return link("left-prev"), link("right-next")


def test_pages_link_previous_and_next(site):
    out, _ = site
    html = out / "html"
    assert _prev_next((html / "index.html").read_text()) == ([], ["01_first.html"])
    assert _prev_next((html / "01_first.html").read_text()) == (["index.html"], ["02_second.html"])
    assert _prev_next((html / "02_second.html").read_text()) == (["01_first.html"], [])


def test_pages_load_nothing_from_the_network(site):
    """Every script, style sheet, font and image a page loads is a file of the site (no CDN)."""
    out, _ = site
    for page in (out / "html").glob("*.html"):
        text = page.read_text()
        loaded = re.findall(r'<(?:script|img|link|iframe|source)\b[^>]*?(?:src|href)="([^"]+)"', text)
        remote = [u for u in loaded if re.match(r"(https?:)?//", u) and "rel=\"canonical\"" not in u]
        assert remote == [], (page.name, remote)
        assert "require.js" not in text and "embed-amd" not in text and "cdn" not in text.lower(), page.name
    static = out / "html" / "_static"
    for css in static.rglob("*.css"):  # fonts and images a style sheet pulls in
        urls = re.findall(r"url\(\s*['\"]?([^)'\"]+)", css.read_text(errors="replace"))
        assert [u for u in urls if re.match(r"(https?:)?//", u)] == [], css.name


def test_math_uses_the_local_mathjax(site):
    out, _ = site
    page = (out / "html" / "01_first.html").read_text()
    src = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', page)
    assert src and all(s.startswith("_static/mathjax-3.2.2-tex-svg-full.js") for s in src), src
    assert (out / "html" / "_static" / "mathjax-3.2.2-tex-svg-full.js").stat().st_size > 1_000_000
    assert r"\(\sum_i s_i^2\)" in page  # inline math left for MathJax to typeset


def test_panels_render_as_their_precomputed_html(site):
    """The widget view is dropped (it would need a widget manager from a CDN): the static panel shows."""
    out, _ = site
    page = (out / "html" / "01_first.html").read_text()
    assert 'class="dprp-panel"' in page and "widget-view" not in page and "interactive panel:" not in page
    book_copy = nbformat.read(out / "book" / "01_first.ipynb", as_version=4)
    assert "widgets" not in book_copy.metadata
    assert course.WIDGET_VIEW not in book_copy.cells[2].outputs[0].data
    # The executed notebook itself is left as papermill wrote it.
    assert course.WIDGET_VIEW in nbformat.read(out / "notebooks" / "01_first.ipynb", as_version=4).cells[2].outputs[0].data


def test_cells_tagged_remove_cell_stay_off_the_page(site):
    out, _ = site
    assert "plumbingword" not in (out / "html" / "01_first.html").read_text()


def test_solution_markers_are_not_headings(site):
    out, _ = site
    page = (out / "html" / "01_first.html").read_text()
    assert "A worked answer." in page and "SOLUTION" not in page


def test_command_line_rebuilds_the_site_only(site, capsys):
    out, _ = site
    (out / "html" / "01_first.html").unlink()
    assert course.main(["--out", str(out), "--site-only"]) == 0
    assert (out / "html" / "01_first.html").is_file()
    assert "site built in" in capsys.readouterr().out


def test_command_line_is_dprp_course(capsys):
    with pytest.raises(SystemExit):
        course.main(["--help"])
    assert capsys.readouterr().out.startswith("usage: dprp course")


def test_the_site_builds_whatever_the_calling_process_holds(site):
    """sphinx-external-toc scans every object of the process that runs Sphinx, and a dead weak proxy
    (as other work leaves behind: it failed in the test session) stopped the build; it runs apart.
    The fixture's site was built while this process held one."""
    with pytest.raises(ReferenceError):
        isinstance(DEAD, _Thing)
    out, index = site
    assert index.is_file() and "First chapter" in index.read_text()
