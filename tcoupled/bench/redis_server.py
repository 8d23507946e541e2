"""A private, throw-away ``redis-server`` for the staging comparison.

It listens on 127.0.0.1 only, on a free port chosen at run time, keeps nothing on disk
(``--save '' --appendonly no``), works in a folder of the benchmark's output, and is
stopped (and waited for) when the ``with`` block ends, whatever happens inside.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tcoupled.runtime.sysprog import find_program, missing_reason


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing() -> str | None:
    """Why Redis cannot be used here (``None`` when server and client both exist)."""
    if find_program("redis-server") is None:
        return missing_reason("redis-server")
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py not installed (pip install redis, the 'bench' extra)"
    return None


def _connect(port: int, proc: subprocess.Popen, timeout: float) -> Any:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return client
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise OSError(f"redis-server on port {port} did not start") from None
            time.sleep(0.05)


@contextlib.contextmanager
def redis_server(folder: str | Path, timeout: float = 10.0) -> Iterator[Any]:
    """Start a private ``redis-server`` in ``folder``; yield a connected ``redis.Redis``."""
    folder = Path(folder).resolve()   # redis-server changes into --dir before opening the log
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
           "--appendonly", "no", "--dir", str(folder), "--protected-mode", "yes",
           "--logfile", str(folder / "redis.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = None
    try:
        client = _connect(port, proc, timeout)
        yield client
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
