"""GPU kernel: CuPy compiles ``kernels/wave.cu`` at run time (one GPU kernel, not two)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from tcoupled.runtime.errors import BackendUnavailable, ConfigError
from tcoupled.runtime.mpienv import env
from tcoupled.sim.backends import check_step_arrays

#: threads per block along columns and along row groups, and the rows each thread updates
#: (``TC_ROWS`` of kernels/wave.cu); ``TCOUPLED_CUDA_TILE=BXxBYxROWS`` overrides. Chosen on an
#: H200 from the tiles timed at 8192^2 float32 (run/device_report.json): 8 rows per thread
#: beat 1, 2 and 4 in every run, and 256x1 blocks were the fastest or within noise of it
TILE = (256, 1, 8)
#: most rows per thread: a thread keeps 4 ROWS + 2 values in registers
MAX_ROWS = 8


def parse_tile(text: str) -> tuple[int, int, int]:
    """``"128x2x8"`` -> ``(128, 2, 8)``: block x, block y, rows per thread."""
    try:
        bx, by, rows = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"TCOUPLED_CUDA_TILE={text!r}: expected BXxBYxROWS, "
                          "e.g. 256x1x8") from None
    if min(bx, by, rows) < 1 or bx * by > 1024 or rows > MAX_ROWS:
        raise ConfigError(f"TCOUPLED_CUDA_TILE={text!r}: each part must be >= 1, "
                          f"BX*BY <= 1024 threads and ROWS <= {MAX_ROWS}")
    return bx, by, rows


def check_block(tile: tuple[int, int, int], kernels: dict[str, Any]) -> None:
    """Refuse a block larger than a compiled kernel can launch (its registers decide).

    Without the check CUDA stops the first step with "too many resources requested for
    launch" (seen on an H200 timing 512 threads of 16 rows: 150 registers a thread).
    """
    threads = tile[0] * tile[1]
    for dtype, kernel in kernels.items():
        limit = getattr(kernel, "max_threads_per_block", None)
        if limit is not None and threads > limit:
            raise ConfigError(f"TCOUPLED_CUDA_TILE={'x'.join(map(str, tile))}: {threads} "
                              f"threads per block, but the {dtype} kernel with "
                              f"{tile[2]} rows per thread launches at most {limit}")


def kernel_source() -> str:
    """Source of the CUDA kernel shipped with the package."""
    here = Path(__file__).resolve().parents[2]
    for path in (here / "_kernels" / "wave.cu", here.parent / "kernels" / "wave.cu"):
        if path.exists():
            return path.read_text()
    raise BackendUnavailable("kernels/wave.cu is missing from this installation")


@lru_cache(maxsize=1)
def _cupy() -> Any:
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - any import failure means no GPU backend
        raise BackendUnavailable(f"--kernel cupy needs CuPy and a GPU: {exc}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver / no device
        raise BackendUnavailable(f"--kernel cupy needs a GPU, none found ({exc})") from None
    if count == 0:
        raise BackendUnavailable("--kernel cupy needs a GPU, none found")
    return cupy


class CupyBackend:
    """Leapfrog update on the current CUDA device through a RawModule."""

    name = "cupy"

    def __init__(self, tile: tuple[int, int, int] | None = None) -> None:
        self.xp = _cupy()
        forced = env("CUDA_TILE")
        self.tile = tile or (parse_tile(forced) if forced else TILE)
        # the kernel's explicit PTX rounds exactly as the NumPy reference does (same
        # operations, same order, no FMA, no flush to zero), so GPU and CPU runs agree
        # bit for bit; --fmad=false keeps any other arithmetic uncontracted too
        module = self.xp.RawModule(code=kernel_source(),
                                   options=("--fmad=false", f"-DTC_ROWS={self.tile[2]}"))
        self._kernels = {"float32": module.get_function("tc_wave_step_f32"),
                         "float64": module.get_function("tc_wave_step_f64")}
        check_block(self.tile, self._kernels)

    def zeros(self, shape: tuple[int, int], dtype: str) -> Any:
        """Zero-filled device array."""
        return self.xp.zeros(shape, dtype=dtype)

    def step(self, u: Any, u_prev: Any, u_next: Any, box: tuple[int, int, int, int],
             cx: float, cy: float) -> None:
        """Launch the kernel on ``box`` (``u_next`` may be ``u_prev``, never ``u``).

        The arrays are checked as the C backend checks them (contiguity, dtype,
        shape): the kernel indexes raw pointers and would read a strided view wrongly.
        """
        i0, i1, j0, j1 = box
        if i0 >= i1 or j0 >= j1:
            return
        check_step_arrays(u, u_prev, u_next, box)
        xp = self.xp
        bx, by, rows = self.tile
        grid = (-(-(j1 - j0) // bx), -(-(i1 - i0) // (by * rows)))
        scalar = xp.dtype(u.dtype).type
        args = (u, u_prev, u_next, xp.int64(u.shape[1]), xp.int64(i0), xp.int64(i1),
                xp.int64(j0), xp.int64(j1), scalar(cx), scalar(cy))
        self._kernels[str(u.dtype)](grid, (bx, by), args)


def load() -> CupyBackend:
    """Return the CuPy backend, or raise :class:`BackendUnavailable` without a GPU."""
    return CupyBackend()
