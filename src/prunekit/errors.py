"""Errors meant for users: the command line prints them on one line and exits non-zero."""


class PrunekitError(Exception):
    """Base class for every error that names a user's mistake and what to do about it."""


class ConfigError(PrunekitError, ValueError):
    """An option or a configuration value is invalid (unknown name, out of range...)."""


class DataNotFoundError(PrunekitError, FileNotFoundError):
    """Data files are missing and cannot be downloaded."""


class CheckpointError(PrunekitError):
    """A checkpoint file is missing, corrupt, truncated or of an unexpected format."""


class ResourceError(PrunekitError, MemoryError):
    """A computation would need more memory than is available."""
