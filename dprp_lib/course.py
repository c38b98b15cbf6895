"""Run the whole course headless: every chapter executed with papermill, saved with its HTML.

    python -m dprp_lib.course [--mode auto|smoke|quick|full] [--out build] [--only 01 03]

`auto` is "full" on a machine with a CUDA GPU and "quick" (the laptop CPU course) otherwise.
Writes build/notebooks/NN_*.ipynb (executed), build/html/NN_*.html with build/html/index.html
(the table of contents; the pages work offline: dprp_lib/site/), build/metrics/NN_*.json and
build/course.json (mode, time and status of each chapter).
"""
from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import time
from pathlib import Path

import torch

from .experiments import MODES

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
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
            cell_timeout: int | None = None) -> None:
    """Execute `notebook` with papermill into `output`, passing only the parameters it declares.

    `cell_timeout` (seconds) turns a stalled cell into an error instead of a hang.
    """
    import papermill as pm
    from jupyter_client.manager import KernelManager

    class EncryptedKernelManager(KernelManager):
        # Curve-encrypted kernel sockets where the kernel supports them: ipykernel >= 7.3 warns
        # on every start otherwise, once per chapter. Older jupyter_client ignores the attribute.
        transport_encryption = "auto"

    declared = set(pm.inspect_notebook(str(notebook)))
    output.parent.mkdir(parents=True, exist_ok=True)
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


def to_html(notebook: Path, output: Path, prev: tuple | None = None, next: tuple | None = None) -> None:
    """One offline course page (dprp_lib/site/): local MathJax, static panels, links to the
    table of contents and to the chapters before and after (`(href, title)` pairs)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    nb.metadata.pop("widgets", None)  # panels export as their static HTML, not as widget state
    exporter = HTMLExporter(template_name="dprp", extra_template_basedirs=[str(SITE / "templates")])
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title(nb)},
                                                        "dprp_prev": prev, "dprp_next": next})
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(body, encoding="utf-8")


def write_site(out: Path, report: list[dict]) -> Path:
    """build/html/: the assets the pages load, and index.html listing the chapters in order."""
    html_dir = out / "html"
    shutil.copytree(SITE / "assets", html_dir / "assets", dirs_exist_ok=True)
    rows = []
    for r in report:
        page = html_dir / f"{r['chapter']}.html"
        link = (f'<a href="{page.name}">{html.escape(r["title"])}</a>' if page.exists()
                else html.escape(r["title"]))
        rows.append(f"<tr><td>{link}</td><td>{r['seconds']:.0f} s</td><td>{html.escape(r['status'])}</td></tr>")
    index = html_dir / "index.html"
    index.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>DPRP course: chapters</title>
<style>body {{ font: 15px sans-serif; max-width: 60em; margin: 2em auto; }} td {{ padding: 4px 12px; }}</style>
</head><body>
<h1>Dynamic Parameter Rank Pruning: the course</h1>
<p>Chapters in reading order, executed in {html.escape(report[0]["mode"] if report else "?")} mode.
The interactive panels are precomputed here; open the notebooks in JupyterLab (<code>make lab</code>) to compute your own.</p>
<table><thead><tr><th>chapter</th><th>run time</th><th>status</th></tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
""", encoding="utf-8")
    return index


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
        params = {"MODE": mode, "DEVICE": device,
                  "METRICS_PATH": os.path.relpath(out / "metrics" / f"{nb.stem}.json", nb.parent),
                  "RUNS_DIR": os.path.relpath(out / "runs", nb.parent)}
        executed = out / "notebooks" / nb.name
        try:
            execute(nb, executed, params, kernel)
            status = "ok"
        except Exception as e:  # papermill raises PapermillExecutionError with the failing cell
            status = f"failed: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        seconds = time.perf_counter() - t0
        report.append({"chapter": nb.stem, "title": title(_read(nb)), "mode": mode, "seconds": round(seconds, 1),
                       "status": status})
        print(f"  {nb.stem:<32} {seconds:7.1f} s  {status}", flush=True)
    # Pages last, so that each links to the chapters before and after it.
    pages = [(r["chapter"], r["title"]) for r in report if (out / "notebooks" / f"{r['chapter']}.ipynb").exists()]
    for i, (stem, _) in enumerate(pages):
        prev = (f"{pages[i - 1][0]}.html", pages[i - 1][1]) if i else None
        nxt = (f"{pages[i + 1][0]}.html", pages[i + 1][1]) if i + 1 < len(pages) else None
        to_html(out / "notebooks" / f"{stem}.ipynb", out / "html" / f"{stem}.html", prev, nxt)
    write_site(out, report)
    (out / "course.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _read(path: Path):
    import nbformat

    return nbformat.read(path, as_version=4)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dprp_lib.course", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="auto")
    p.add_argument("--out", default="build")
    p.add_argument("--only", nargs="*", default=(), help="chapter numbers, e.g. 01 05")
    p.add_argument("--device", default="auto")
    p.add_argument("--kernel", default="python3")
    args = p.parse_args(argv)
    report = run_course(args.mode, args.out, args.only, args.kernel, args.device)
    failed = [r for r in report if r["status"] != "ok"]
    print(f"{len(report) - len(failed)}/{len(report)} chapters ran; executed notebooks in {args.out}/notebooks, "
          f"pages in {args.out}/html (open {args.out}/html/index.html; they work offline)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
