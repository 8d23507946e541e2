"""Exceptions that reach the user as a one-line message and a non-zero exit."""


class TcoupledError(Exception):
    """An error the user can fix; the CLI prints it on one line and exits 2."""

    exit_code = 2


class ConfigError(TcoupledError, ValueError):
    """A configuration value is invalid; the message names the value."""


class LayoutError(ConfigError):
    """The requested rank layout does not fit the world or the machine."""


class BackendUnavailable(TcoupledError):
    """A requested kernel backend, engine or device is not available here."""


class PhysicsError(TcoupledError):
    """The simulation became invalid (e.g. NaN or Inf in the field)."""

    exit_code = 3
