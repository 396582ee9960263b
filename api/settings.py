"""The API's settings: the hub's settings (database, broker) plus HTTP and session options."""

from __future__ import annotations

from pydantic import Field

from hub.settings import Settings


class ApiSettings(Settings):
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    # Sessions expire; a care console on a shift-long screen logs in again after a shift.
    session_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 24 * 3600)
    # Failed logins allowed per username from one client address, and per client address,
    # in the window ...
    login_failures_per_user: int = Field(default=5, ge=1, le=1000)
    login_failures_per_client: int = Field(default=20, ge=1, le=10000)
    # ... and per username from every client together, so a guess spread over many
    # addresses still meets a limit, while a stranger alone cannot lock a nurse out.
    login_failures_per_username: int = Field(default=100, ge=1, le=100000)
    login_window_s: int = Field(default=15 * 60, ge=10, le=24 * 3600)
    # Behind a reverse proxy: the proxy's addresses, whose X-Forwarded-For is believed, so
    # that login limits count real clients (uvicorn's forwarded_allow_ips).
    forwarded_allow_ips: str = "127.0.0.1"
    # Only `ankang demo` sets this: demo accounts with published passwords are accepted.
    demo: bool = False
    # Cookies go over HTTPS only; set behind a TLS-terminating proxy.
    secure_cookies: bool = False
    db_pool_max: int = Field(default=10, ge=2, le=200)
    # Request bodies larger than this are refused (413) before they are read. The largest
    # legitimate ones are a few KiB: a contact (a 2,000-character URL), a note of 2,000
    # characters (up to 12 KiB as escaped JSON), a policy of 20 steps.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
