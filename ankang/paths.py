"""Where ankang keeps what it makes at run time: never inside the installed package."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir(name: str) -> Path:
    """``$XDG_STATE_HOME/ankang/NAME``; else ``/var/lib/ankang/NAME`` as root, else
    ``~/.local/state/ankang/NAME``."""
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "ankang" / name
    if os.geteuid() == 0:
        return Path("/var/lib/ankang") / name
    return Path.home() / ".local" / "state" / "ankang" / name
