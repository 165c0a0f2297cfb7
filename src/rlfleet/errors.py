"""Errors that the CLI reports as one clear line (no traceback) with a non-zero exit."""


class RlfleetError(Exception):
    """Base class for user-facing errors."""


class ConfigError(RlfleetError):
    """Bad configuration: unknown key, wrong type, unknown algorithm or env, bad import path."""


class CheckpointError(RlfleetError):
    """A checkpoint that is missing, corrupt, truncated or from an incompatible run."""
