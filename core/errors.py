"""Exceptions whose message is written for the person using the app.

Panels show ``str(exc)`` of a :class:`UserError` as-is, so every message is one plain
sentence that says what was wrong and, where possible, what to do instead.
"""


class UserError(Exception):
    """Bad input or an unavailable resource, explained in one sentence."""


class MissingWeights(UserError):
    """A model's weight file is not available locally and could not be downloaded."""


class WeightsMismatch(UserError):
    """A weight file exists but its sha256 is not the one the registry pins."""
