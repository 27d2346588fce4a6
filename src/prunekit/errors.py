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


class DataError(PrunekitError, ValueError):
    """Data files or tensors are unusable: corrupt, empty, of the wrong shape or range."""


class NonFiniteError(PrunekitError, ArithmeticError):
    """NaN or Inf in weights, losses, metrics or gradients; the message names the stage."""


class UnsafeFileError(CheckpointError):
    """A torch file names Python objects other than tensors and was refused for safety."""


class RunFolderError(PrunekitError, OSError):
    """A run folder cannot be written (read-only, not a folder, no permission, disk full)."""


class RunFolderBusyError(RunFolderError):
    """Another process holds the run folder's lock."""
