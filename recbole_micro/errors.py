"""User-facing errors: each message names the file, field or key, what was found, and the fix.

The runner prints them as one line (no traceback); they subclass ``ValueError`` so library users can
catch them as the bad-input errors they are.
"""


class RecboleMicroError(ValueError):
    """Base class of every error the plugin raises for bad input."""


class ConfigError(RecboleMicroError):
    """An unknown or out-of-range configuration value."""


class FeatureError(RecboleMicroError):
    """A feature atom is missing, misaligned or holds unusable values."""


class DatasetNotFoundError(RecboleMicroError):
    """No atomic files exist for the requested dataset."""


class CheckpointError(RecboleMicroError):
    """A checkpoint file is unreadable or belongs to another model or dataset."""


class Busy(ConfigError):
    """A file another running job holds (a tuning export being searched, a run being trained)."""
