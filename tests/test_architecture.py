"""The package's layering and sizes (see the README's module map and ``.importlinter``)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tcoupled"


def _lint_imports() -> str | None:
    exe = Path(sys.executable).with_name("lint-imports")
    return str(exe) if exe.exists() else shutil.which("lint-imports")


def test_import_contracts_hold():
    exe = _lint_imports()
    if exe is None:
        pytest.skip("import-linter is not installed (pip install import-linter)")
    result = subprocess.run([exe, "--config", str(ROOT / ".importlinter")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_few_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 4, top
    assert {"__init__.py", "__main__.py"} <= set(top)


def _lines(path: Path) -> int:
    return path.read_text().count("\n")


def test_no_module_over_350_lines():
    big = {str(p.relative_to(ROOT)): _lines(p) for p in PACKAGE.rglob("*.py")
           if _lines(p) > 350}
    assert not big, big


def test_command_modules_are_thin():
    big = {p.name: _lines(p) for p in (PACKAGE / "app").glob("*.py")
           if p.name not in ("cli.py", "configfile.py", "__init__.py") and _lines(p) > 150}
    assert not big, big


def test_every_role_folder_says_what_it_owns():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        if init.parent.name.startswith("_"):
            continue
        doc = init.read_text().lstrip()
        assert doc.startswith('"""') and len(doc.split('"""')[1]) > 60, init
