"""Errors that mean "the input was wrong", as opposed to a bug in jaxlab.

Scripts catch :class:`JaxlabError` and print its message alone, without a traceback.
"""


class JaxlabError(Exception):
    """Base class for user-facing errors."""


class ConfigError(JaxlabError, ValueError):
    """A bad argument or configuration value."""


class DataNotFoundError(JaxlabError, FileNotFoundError):
    """The dataset is not prepared where jaxlab looked and could not be downloaded."""


class Interrupted(JaxlabError):
    """A run stopped by SIGINT or SIGTERM after checkpointing; ``--resume`` continues it."""

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name
