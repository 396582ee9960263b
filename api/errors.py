"""The API's own failures. Routes turn them into HTTP answers (api/app.py)."""

from __future__ import annotations


class ApiError(Exception):
    """Root of the API's errors."""


class AccountError(ApiError):
    """An account cannot be created or changed as asked (unknown link, taken name)."""


class WeakPassword(AccountError):
    """A password that is too short, too long, a known default or the username."""


class LoginFailed(ApiError):
    """Wrong username or password (deliberately the same for both)."""


class LoginThrottled(ApiError):
    """Too many failed logins for this username or client address; try again later."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class DemoAccountsPresent(ApiError):
    """Enabled demo accounts (published passwords) exist and this is not the demo."""
