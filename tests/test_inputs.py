"""Hostile input files: one line naming the file and the fault, exit 2, nothing written.

Every file tcoupled reads -- a search space, a --config file, a run directory's
args.json / config.json / journal / checkpoint for --resume, summary.json and results.h5
for report -- is replaced by each kind of bad file it could meet. The CLI runs in this
process (``cli.main``; MPI as a singleton), so no mpiexec is started.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tcoupled.app.cli import main
from tcoupled.coupling.checkpoint import rank_file

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

#: how each kind of hostile file is made from a good one (None: take the good content)
KINDS = {
    "empty": lambda good: b"",
    "truncated": lambda good: good[: max(1, len(good) // 2)],
    "binary": lambda good: bytes(range(256)) * 8,
    "utf16": lambda good: good.decode("utf-8").encode("utf-16"),
    "latin1": lambda good: good + "# caf\u00e9\n".encode("latin-1"),
    "huge-line": lambda good: good + b"C" * 200_000 + b"\n",
    "directory": None,
    "outside-link": None,
}


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_dir() or p.read_bytes() if not p.is_symlink()
                                       else os.readlink(p))
            for p in sorted(root.rglob("*"))}


def _couple_run(folder: Path) -> Path:
    """A couple run directory with args.json and one complete checkpoint (cycle 2)."""
    import argparse

    from tcoupled.app import couple
    from tcoupled.coupling.checkpoint import save_rank_state

    parser = argparse.ArgumentParser()
    couple.add_arguments(parser)
    couple.make_config(parser.parse_args(["--cycles", "3", "--out", str(folder)]), 1)
    save_rank_state(folder, 2, 0, {"cycle": 2})
    return folder


def _screen_run(folder: Path) -> Path:
    from dataclasses import asdict

    from tcoupled.runtime.store import write_json
    from tcoupled.screening.loop import Record, ScreenConfig

    folder.mkdir()
    write_json(folder / "config.json", asdict(ScreenConfig(out=str(folder), space="qm9")))
    record = Record(0, "C", 10.0, "ok", "", 1, 0.0, 1.0, 1.0, float("nan"))
    (folder / "journal.jsonl").write_text(json.dumps(record.__dict__) + "\n")
    return folder


def _finished_run(folder: Path) -> Path:
    from tcoupled.runtime.store import open_results, write_summary

    folder.mkdir()
    write_summary(folder, {"command": "wave", "wall_s": 1.0})
    with open_results(folder, {}, "wave") as h5:
        h5["wave/u"] = [[0.0]]
    return folder


#: target -> (make the good setting in tmp, file to spoil, argv, kinds that apply)
def _targets(tmp: Path) -> dict:
    space = tmp / "space.smi"
    space.write_text("CCO\nCC\n")
    config = tmp / "run.yaml"
    config.write_text("steps: 3\n")
    couple_run, screen_run, done = tmp / "couple", tmp / "screen", tmp / "done"
    return {
        "space": (lambda: None, space,
                  ["screen", "--space", str(space), "--out", str(tmp / "out")]),
        "config": (lambda: None, config,
                   ["wave", "--config", str(config), "--out", str(tmp / "out")]),
        "args.json": (lambda: _couple_run(couple_run), couple_run / "args.json",
                      ["couple", "--resume", str(couple_run)]),
        "checkpoint": (lambda: _couple_run(couple_run), rank_file(couple_run, 2, 0),
                       ["couple", "--resume", str(couple_run)]),
        "config.json": (lambda: _screen_run(screen_run), screen_run / "config.json",
                        ["screen", "--resume", str(screen_run)]),
        "journal": (lambda: _screen_run(screen_run), screen_run / "journal.jsonl",
                    ["screen", "--resume", str(screen_run)]),
        "summary.json": (lambda: _finished_run(done), done / "summary.json",
                         ["report", str(done)]),
        "results.h5": (lambda: _finished_run(done), done / "results.h5",
                       ["report", str(done)]),
    }


#: kinds that make no sense for a target: a text file cannot be "truncated" into an
#: error, a binary file has no encoding or lines, a user's own file may be a link
NOT_APPLICABLE = {
    "space": {"truncated", "outside-link"}, "config": {"truncated", "outside-link"},
    "checkpoint": {"utf16", "latin1", "huge-line", "truncated"},
    "results.h5": {"utf16", "latin1", "huge-line"},
    "summary.json": {"huge-line"}, "config.json": {"huge-line"}, "args.json": {"huge-line"},
    # a torn last line or an empty journal is what a kill leaves: dropped, not an error
    "journal": {"truncated", "empty"},
}
CASES = [(t, k) for t in ("space", "config", "args.json", "checkpoint", "config.json",
                          "journal", "summary.json", "results.h5")
         for k in KINDS if k not in NOT_APPLICABLE.get(t, ())]


@pytest.mark.parametrize("target, kind", CASES, ids=[f"{t}-{k}" for t, k in CASES])
def test_hostile_file_is_one_line_exit_2_nothing_written(tmp_path, capsys, target, kind):
    prepare, path, argv = _targets(tmp_path)[target]
    prepare()
    good = path.read_bytes()
    path.unlink()
    if kind == "directory":
        path.mkdir()
    elif kind == "outside-link":
        outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
        outside.write_bytes(good)
        path.symlink_to(outside)
    else:
        path.write_bytes(KINDS[kind](good))
    before = _snapshot(tmp_path)
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exc:  # a --config error ends argument parsing
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert path.name in err, err
    assert _snapshot(tmp_path) == before


def test_torn_last_journal_line_is_dropped_not_refused(tmp_path):
    from tcoupled.screening.loop import Journal

    run = _screen_run(tmp_path / "screen")
    with open(run / "journal.jsonl", "a") as handle:
        handle.write('{"index": 1, "smi')
    assert Journal(run).check() == 1 and len(Journal(run).load()) == 1


def test_resume_refuses_a_run_that_predates_a_flag(tmp_path):
    """A flag added since the run was started would take today's default: refused."""
    import argparse

    from tcoupled.coupling.resume import resumed_args, store_args
    from tcoupled.runtime.errors import ConfigError
    from tcoupled.workflow.couple_flags import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    started = parser.parse_args(["--out", str(tmp_path)])
    store_args(tmp_path, started)
    again = parser.parse_args(["--resume", str(tmp_path)])
    assert resumed_args(again, add_arguments, str(tmp_path), ()).grid == started.grid
    stored = json.loads((tmp_path / "args.json").read_text())
    del stored["activation"], stored["lr_schedule"]
    (tmp_path / "args.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match="started before --activation, --lr-schedule existed"):
        resumed_args(again, add_arguments, str(tmp_path), ())
