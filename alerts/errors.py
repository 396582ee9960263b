"""Exceptions of the ``alerts`` package.

    AlertsError
    ├── AlarmNotFound          no alarm has that id
    ├── TransitionRefused      the alarm's state does not allow it (already resolved, ...)
    ├── InvalidInput           a bad resolution, an empty actor, an oversized note
    └── AlertsUnavailable      the database cannot be reached; retry later

Each is raised before anything is written, or with the transaction rolled back: a refused
request never leaves a half-done change.
"""


class AlertsError(Exception):
    """Root of every error raised by ``alerts``."""


class AlarmNotFound(AlertsError):
    """No alarm has the given id."""


class TransitionRefused(AlertsError):
    """The alarm's current state does not allow the transition."""


class InvalidInput(AlertsError):
    """A request was malformed: bad resolution, empty actor, note too long."""


class AlertsUnavailable(AlertsError):
    """The database cannot be reached right now."""
