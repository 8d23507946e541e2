"""tcoupled: couple an HPC simulation with AI in one MPI launch.

Importing the package has no side effects: no MPI initialisation, no GPU
selection and no torch import happen until a command needs them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
