"""Exceptions of the ``alerts`` package.

    AlertsError
    ├── AlarmNotFound          no alarm has that id
    ├── TransitionRefused      the alarm's state does not allow it (already resolved, ...)
    ├── InvalidInput           a bad resolution, an empty actor, an oversized note, a bad
    │                          contact or escalation policy
    ├── TemplateError          a message template cannot be rendered (a missing field)
    ├── DeliveryFailed         a channel refused or could not take a message (the reason)
    └── AlertsUnavailable      the database cannot be reached; retry later

Each is raised before anything is written, or with the transaction rolled back: a refused
request never leaves a half-done change. ``TemplateError`` and ``DeliveryFailed`` do not
escape the service: they become a failed notification with the reason.
"""


class AlertsError(Exception):
    """Root of every error raised by ``alerts``."""


class AlarmNotFound(AlertsError):
    """No alarm has the given id."""


class TransitionRefused(AlertsError):
    """The alarm's current state does not allow the transition."""


class InvalidInput(AlertsError):
    """A request was malformed: bad resolution, empty actor, note too long."""


class TemplateError(AlertsError):
    """A message template could not be rendered; the notification is stored as failed."""


class DeliveryFailed(AlertsError):
    """A channel did not take a message. The text is the reason recorded on the notification;
    ``permanent`` means retrying cannot help (a URL apprise cannot use)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


class AlertsUnavailable(AlertsError):
    """The database cannot be reached right now."""
