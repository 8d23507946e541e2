"""Commands: thin modules that compose the library (see :mod:`tcoupled.cli`)."""
