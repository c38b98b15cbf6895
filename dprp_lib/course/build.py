"""Run the whole course headless: every chapter executed with papermill, and the course site.

    dprp course [--mode auto|smoke|quick|full] [--out build] [--only 01 03] [--site-only]

`auto` is "full" on a machine with a CUDA GPU and "quick" (the laptop CPU course) otherwise.
Writes build/notebooks/NN_*.ipynb (executed), build/metrics/NN_*.json, build/course.json (mode,
time and status of each chapter) and the site: build/html/index.html and build/html/NN_*.html, a
Jupyter Book of the executed chapters (source in build/book/, configuration in dprp_lib/course/site/book/)
that works offline. --site-only rebuilds the site from OUT/notebooks/ without executing anything.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from unittest import mock

import torch

from .. import paths
from ..engine.experiments import MODES
from .notebook import METRICS_DIR

NOTEBOOKS = paths.ROOT / "notebooks"
SITE = Path(__file__).resolve().parent / "site"


def chapters(root=NOTEBOOKS) -> list[Path]:
    """The chapters in reading order: notebooks/NN_*.ipynb."""
    return sorted(p for p in Path(root).glob("[0-9][0-9]_*.ipynb"))


def resolve_mode(mode: str) -> str:
    if mode == "auto":
        return "full" if torch.cuda.is_available() else "quick"
    if mode not in MODES:
        raise ValueError(f"mode must be auto or one of {MODES}, got {mode!r}")
    return mode


def execute(notebook: Path, output: Path, parameters: dict, kernel: str = "python3",
            cell_timeout: int | None = None, metrics_dir: Path | None = None) -> None:
    """Execute `notebook` with papermill into `output`, passing only the parameters it declares.

    `cell_timeout` (seconds) turns a stalled cell into an error instead of a hang; `metrics_dir`
    is where the chapter's `save_metrics` writes (the kernel inherits it as $DPRP_METRICS_DIR).
    """
    import papermill as pm
    from jupyter_client.manager import KernelManager

    class EncryptedKernelManager(KernelManager):
        # Curve-encrypted kernel sockets where the kernel supports them: ipykernel >= 7.3 warns
        # on every start otherwise, once per chapter. Older jupyter_client ignores the attribute.
        transport_encryption = "auto"

    declared = set(pm.inspect_notebook(str(notebook)))
    output.parent.mkdir(parents=True, exist_ok=True)
    with mock.patch.dict(os.environ, {METRICS_DIR: str(metrics_dir)} if metrics_dir is not None else {}):
        pm.execute_notebook(str(notebook), str(output), kernel_name=kernel, cwd=str(notebook.parent),
                            parameters={k: v for k, v in parameters.items() if k in declared},
                            progress_bar=False, execution_timeout=cell_timeout,
                            kernel_manager_class=EncryptedKernelManager)


def title(nb) -> str:
    """A chapter's title: its first markdown heading, without the leading #s."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return "DPRP course"


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SOLUTION_MARKER = re.compile(r"^\s*#*\s*(BEGIN|END) SOLUTION\s*$")


def book_notebook(executed: Path, output: Path) -> None:
    """A copy of an executed chapter for the book: each panel as its precomputed static HTML
    (widget views and widget state dropped, so no page needs a widget manager or a CDN)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            out.get("data", {}).pop(WIDGET_VIEW, None)
        if cell.cell_type == "markdown":  # nbgrader's answer markers would be headings in the outline
            cell.source = "\n".join(line for line in cell.source.splitlines() if not SOLUTION_MARKER.match(line))
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, output)


def _chapter_entry(executed: Path, report: dict | None) -> dict:
    """A chapter's row on the home page: from this run's report, else from papermill's record in the
    executed notebook (a chapter executed by an earlier run)."""
    if report:
        return report
    pm = _read(executed).metadata.get("papermill", {})
    return {"chapter": executed.stem, "mode": pm.get("parameters", {}).get("MODE"), "seconds": pm.get("duration"),
            "status": "failed" if pm.get("exception") else "ok"}


def _home_page(entries: list[dict]) -> str:
    """index.md: what the site is, and the chapters in order with their run time and status."""
    modes = sorted({e["mode"] for e in entries if e.get("mode")})
    rows = []
    for e in entries:
        seconds = f"{e['seconds']:.0f} s" if e.get("seconds") is not None else "?"
        status = e.get("status", "").replace("|", "\\|")
        rows.append(f"| {{doc}}`{e['chapter']}` | {seconds} | {status} |")
    return f"""# Dynamic Parameter Rank Pruning: the course

The chapters on the method of *Convolutional Neural Network Compression via Dynamic Parameter Rank
Pruning* (Sharma et al., [arXiv 2401.08014](https://arxiv.org/abs/2401.08014)), each a notebook
executed in {" and ".join(modes) or "?"} mode by `make course`, in reading order. The interactive panels
are precomputed on these pages (every view computed when the page was built, switched by its controls);
open the notebooks in JupyterLab (`make lab`) to compute your own.

| chapter | run time | status |
| --- | --- | --- |
{chr(10).join(rows)}
"""


def write_book(out: Path, report: list[dict]) -> Path:
    """build/book/: the Jupyter Book source (dprp_lib/course/site/book/, its _toc.yml, index.md and every
    executed chapter in build/notebooks/, including those an earlier run executed)."""
    book = out / "book"
    shutil.rmtree(book, ignore_errors=True)
    shutil.copytree(SITE / "book", book)
    ran = {r["chapter"]: r for r in report}
    entries = [_chapter_entry(p, ran.get(p.stem)) for p in chapters(out / "notebooks")]
    for e in entries:
        book_notebook(out / "notebooks" / f"{e['chapter']}.ipynb", book / f"{e['chapter']}.ipynb")
    toc = ["format: jb-book", "root: index", "chapters:"] + [f"- file: {e['chapter']}" for e in entries]
    (book / "_toc.yml").write_text("\n".join(toc) + "\n", encoding="utf-8")
    (book / "index.md").write_text(_home_page(entries), encoding="utf-8")
    return book


def _build_book(book: Path, html_dir: Path, quiet: bool):
    """What `jupyter-book build` does, with the output and doctrees where this project wants them."""
    from jupyter_book.sphinx import build_sphinx

    with warnings.catch_warnings():  # the extensions' deprecation notices, not the book's
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return build_sphinx(book, html_dir, noconfig=True, path_config=book / "_config.yml",
                            confoverrides={"external_toc_path": (book / "_toc.yml").as_posix(),
                                           "latex_individualpages": False},
                            doctreedir=book / "_build" / "doctrees", freshenv=True, quiet=quiet)


def write_site(out: Path, report: list[dict], quiet: bool = True) -> Path:
    """build/html/: the course site, a Jupyter Book of the executed chapters (nothing is executed
    again): a sidebar table of contents, search, previous/next links, local MathJax. Returns index.html."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    out = Path(out).resolve()
    book = write_book(out, report)
    html_dir = out / "html"
    shutil.rmtree(html_dir, ignore_errors=True)
    # In a fresh process: sphinx-external-toc scans every object the process holds, and a dead weak
    # proxy left by earlier work in the same process (a test session, a notebook) makes it fail.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        status = child.submit(_build_book, book, html_dir, quiet).result()
    if status != 0:
        raise RuntimeError(f"the course site did not build (Sphinx: {status!r})")
    return html_dir / "index.html"


def run_course(mode="auto", out="build", only=(), kernel="python3", device="auto") -> list[dict]:
    mode = resolve_mode(mode)
    out = Path(out).resolve()
    selected = [p for p in chapters() if not only or p.name[:2] in only]
    if not selected:
        raise ValueError(f"no chapter matches {list(only)}")
    print(f"running {len(selected)} chapter(s) in {mode} mode into {out}/")
    os.environ["DPRP_STATIC_PANELS"] = "1"  # the kernels inherit it: panels carry their static version
    report = []
    for nb in selected:
        t0 = time.perf_counter()
        # Paths relative to the chapter (it runs from notebooks/), so no page shows this machine's folders.
        params = {"MODE": mode, "DEVICE": device, "RUNS_DIR": os.path.relpath(out / "runs", nb.parent)}
        executed = out / "notebooks" / nb.name
        try:
            execute(nb, executed, params, kernel, metrics_dir=(out / "metrics").resolve())
            status = "ok"
        except Exception as e:  # papermill raises PapermillExecutionError with the failing cell
            status = f"failed: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        seconds = time.perf_counter() - t0
        report.append({"chapter": nb.stem, "title": title(_read(nb)), "mode": mode, "seconds": round(seconds, 1),
                       "status": status})
        print(f"  {nb.stem:<32} {seconds:7.1f} s  {status}", flush=True)
    # The site last, so that it has every chapter.
    t0 = time.perf_counter()
    write_site(out, report)
    print(f"  site (Jupyter Book) {time.perf_counter() - t0:7.1f} s  {out / 'html' / 'index.html'}", flush=True)
    (out / "course.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _read(path: Path):
    import nbformat

    return nbformat.read(path, as_version=4)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dprp course", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="auto")
    p.add_argument("--out", default="build")
    p.add_argument("--only", nargs="*", default=(), help="chapter numbers, e.g. 01 05")
    p.add_argument("--device", default="auto")
    p.add_argument("--kernel", default="python3")
    p.add_argument("--site-only", action="store_true",
                   help="rebuild the site from OUT/notebooks (executed earlier) without running the chapters")
    args = p.parse_args(argv)
    if args.site_only:
        t0 = time.perf_counter()
        index = write_site(Path(args.out), [])
        print(f"site built in {time.perf_counter() - t0:.0f} s: open {index}")
        return 0
    report = run_course(args.mode, args.out, args.only, args.kernel, args.device)
    failed = [r for r in report if r["status"] != "ok"]
    print(f"{len(report) - len(failed)}/{len(report)} chapters ran; executed notebooks in {args.out}/notebooks, "
          f"the site in {args.out}/html (open {args.out}/html/index.html; it works offline)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
