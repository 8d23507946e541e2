"""Package metadata; builds the C stencil library through CMake.

When CMake or a C compiler is missing, or the build fails, the package still
installs: the kernel registry then falls back to NumPy and says so once.
``install_requires`` names only what is safe on every site: on Polaris the
system provides torch (CUDA), mpi4py (cray-mpich) and CuPy, so the ``mpich``
wheel and exact pins live in ``run/bootstrap.sh``, never here.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    """An extension built by CMake instead of setuptools' compiler."""

    def __init__(self, name: str, target: str) -> None:
        super().__init__(name, sources=[])
        self.target = target


class CMakeBuild(build_ext):
    """Run CMake for each :class:`CMakeExtension`; warn instead of failing."""

    def run(self) -> None:
        for ext in self.extensions:
            self.build_extension(ext)

    def build_extension(self, ext: Extension) -> None:
        output = Path(self.get_ext_fullpath(ext.name)).resolve()
        output.parent.mkdir(parents=True, exist_ok=True)
        cmake = shutil.which("cmake")
        if cmake is None:
            self._warn("cmake not found")
            return
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        configure = [cmake, "-S", str(HERE), "-B", str(build_dir),
                     f"-DTCOUPLED_OUTPUT_DIR={build_dir / 'lib'}"]
        configure += os.environ.get("TCOUPLED_CMAKE_ARGS", "").split()
        try:
            subprocess.run(configure, check=True)
            subprocess.run([cmake, "--build", str(build_dir), "--target", ext.target],
                           check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            self._warn(f"CMake build failed ({exc})")
            return
        built = next((build_dir / "lib").glob("libtcoupled_wave*.so"), None)
        if built is None:
            self._warn("CMake produced no library")
            return
        shutil.copyfile(built, output)
        self._cuda_check(cmake, build_dir)

    @staticmethod
    def _cuda_check(cmake: str, build_dir: Path) -> None:
        """Compile the CUDA kernel as a build check when CMake found nvcc."""
        cache = (build_dir / "CMakeCache.txt").read_text(errors="replace")
        if "CMAKE_CUDA_COMPILER:FILEPATH=" not in cache:
            return
        result = subprocess.run([cmake, "--build", str(build_dir), "--target",
                                 "tcoupled_wave_cuda"], check=False)
        if result.returncode:
            print("tcoupled: warning: kernels/wave.cu failed to compile with nvcc",
                  file=sys.stderr)

    @staticmethod
    def _warn(reason: str) -> None:
        print(f"tcoupled: warning: {reason}; the C stencil kernel is not built and "
              "the NumPy kernel will be used", file=sys.stderr)


setup(
    name="tcoupled",
    version="0.1.0",
    description="Couple an HPC simulation with AI in one MPI launch",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tcoupled", "tcoupled.*"]),
    package_data={"tcoupled": ["_kernels/*.cu", "_kernels/*.c"]},
    ext_modules=[CMakeExtension("tcoupled._lib.libtcoupled_wave", target="tcoupled_wave")],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=[
        "numpy>=1.24",
        "mpi4py>=3.1",
        "h5py>=3.8",
        "torch",
        "scikit-learn>=1.3",
        "rdkit>=2023.9",
        "tblite>=0.3",
        "ase>=3.22",
        "matplotlib>=3.7",
        "pyyaml>=6",
        "psutil>=5.9",
        "qm9pack>=1.0",
        "setuptools",
    ],
    extras_require={
        "gpu": ["cupy-cuda12x"],
        "test": ["pytest>=7", "pytest-timeout>=2"],
        "bench": ["devito==4.8.23", "parsl", "redis"],  # devito caps numpy<=2.4.3
        "xtb-python": ["xtb", "typing_extensions"],
    },
    entry_points={"console_scripts": ["tcoupled = tcoupled.app.cli:main"]},
)
