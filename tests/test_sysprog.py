"""System programs are found in one place, and TCOUPLED_NO_SYSTEM_PROGRAMS hides them."""

import shutil
import sys
from pathlib import Path

from tcoupled.runtime import sysprog


def test_switch_hides_programs_and_files_outside_the_environment(monkeypatch, tmp_path):
    (tmp_path / "param.txt").write_text("x")
    monkeypatch.delenv(sysprog.HIDE_VARIABLE, raising=False)
    assert sysprog.find_program("sh") == shutil.which("sh") is not None
    assert sysprog.find_file("param.txt", [tmp_path / "no", tmp_path]) == tmp_path / "param.txt"
    monkeypatch.setenv(sysprog.HIDE_VARIABLE, "1")
    assert sysprog.find_program("sh") is None
    assert sysprog.find_file("param.txt", [tmp_path]) is None
    assert "hidden by TCOUPLED_NO_SYSTEM_PROGRAMS=1" in sysprog.missing_reason("sh")
    python = Path(sys.prefix) / "bin" / "python"
    monkeypatch.setenv("PATH", str(python.parent))
    assert sysprog.find_program("python") == str(python)  # the environment's own stay


def test_missing_program_reason_names_the_package(monkeypatch):
    monkeypatch.delenv(sysprog.HIDE_VARIABLE, raising=False)
    assert sysprog.find_program("no-such-program-xyz") is None
    assert (sysprog.missing_reason("no-such-program-xyz", "pkg")
            == "no-such-program-xyz is not installed (Debian package pkg)")
