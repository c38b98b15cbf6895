"""The three wings' imports point one way: method <- engine <- course, and `import dprp_lib` stays light."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dprp_lib"
WINGS = ("method", "engine", "course")


def project_imports(path: Path) -> set[str]:
    """The dprp_lib modules a file imports, as dotted names under dprp_lib ("" for the package itself)."""
    here = path.relative_to(PACKAGE).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[:len(here) - node.level + 1])
            target = base + (node.module.split(".") if node.module else [])
            names = [".".join(target + [a.name]) for a in node.names] if not node.module else [".".join(target)]
            found.update(names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found.update(m.removeprefix("dprp_lib").lstrip(".") for m in mods if m and m.split(".")[0] == "dprp_lib")
    return found


def wing_of(dotted: str) -> str:
    return dotted.split(".")[0] if dotted.split(".")[0] in WINGS else "top"


@pytest.mark.parametrize("wing, forbidden", [("method", {"engine", "course", "top"}),
                                             ("engine", {"course"})])
def test_wings_import_only_the_wings_above(wing, forbidden):
    files = sorted((PACKAGE / wing).glob("*.py"))
    assert files, f"no modules in dprp_lib/{wing}/"
    wrong = {f.name: sorted(m for m in project_imports(f) if wing_of(m) in forbidden) for f in files}
    assert not any(wrong.values()), {k: v for k, v in wrong.items() if v}


def test_layers_import_nothing_of_the_project():
    assert project_imports(PACKAGE / "method" / "layers.py") == set()


def test_the_checker_sees_upward_imports(tmp_path):
    # the test above must be able to fail: an engine-style relative import from the method is caught
    probe = PACKAGE / "method" / "_probe_layout.py"
    probe.write_text("from ..engine.train import fit\nfrom .. import paths\n")
    try:
        assert project_imports(probe) == {"engine.train", "paths"}
    finally:
        probe.unlink()


def test_import_dprp_lib_loads_no_course_tools():
    code = ("import sys, dprp_lib; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('matplotlib', 'ipywidgets', 'papermill', 'nbformat') or m.startswith('dprp_lib.course')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
