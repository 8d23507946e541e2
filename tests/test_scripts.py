"""Launch scripts: shell syntax and shellcheck (the Polaris layout: tests/test_polaris.py)."""

import subprocess
from pathlib import Path

import pytest

from tcoupled.runtime.sysprog import find_program, missing_reason

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*REPO.glob("run/*.sh"), *REPO.glob("run/polaris/*"), REPO / ".ci" / "run"])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.system
@pytest.mark.skipif(find_program("shellcheck") is None,
                    reason=missing_reason("shellcheck"))
def test_shellcheck_passes():
    proc = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
