"""The built wheel works on its own: built from the sources, installed into a fresh virtual
environment with the locked dependencies, ``ankang demo`` serves the console.

Nothing in the fresh environment points at the source tree, so a page, template, static
file, model, migration or YAML file missing from the package data fails here.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("devices", "hub", "alerts", "api", "simulators", "ankang", "lab")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _pip(*args: str, cwd: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    done = subprocess.run([*pip, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its locked runtime dependencies; returns its bin dir."""
    base = tmp_path_factory.mktemp("wheel")
    # build from a copy, so that the build leaves nothing in the working tree
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=junk)
    dist = base / "dist"
    _pip("wheel", "--no-deps", "--wheel-dir", str(dist), str(src), cwd=base)
    (wheel,) = dist.glob("ankang-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # this interpreter's pip installs into the fresh one: only what the wheel declares, pinned
    _pip(
        "--python",
        str(venv / "bin" / "python"),
        "install",
        "-c",
        str(ROOT / "requirements.lock"),
        str(wheel),
        cwd=base,
    )
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import api, ankang; print(api.__file__, ankang.__file__)"],
        cwd=base,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert str(ROOT) not in where and str(venv) in where, where
    return venv / "bin"


@pytest.mark.slow
def test_the_installed_wheel_runs_the_demo_until_ctrl_c(installed: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    mqtt_port, pg_port, metrics_port, api_port = _free_ports(4)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{installed}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "ANKANG_DEMO_MQTT_PORT": str(mqtt_port),
        "ANKANG_DEMO_PG_PORT": str(pg_port),
        "ANKANG_METRICS_PORT": str(metrics_port),
        "ANKANG_API_PORT": str(api_port),
    }
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(installed / "ankang"), "demo"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    api = f"http://127.0.0.1:{api_port}"
    try:
        login = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                login = httpx.get(f"{api}/", follow_redirects=True, timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert login is not None, log.read_text()[-3000:]
        assert login.status_code == 200 and "<form" in login.text and 'action="/login"' in login.text
        assert httpx.get(f"{api}/static/style.css", timeout=5).status_code == 200
        with httpx.Client(base_url=api, timeout=10, follow_redirects=True) as client:
            page = client.post("/login", data={"username": "nurse", "password": "ankang-nurse"})
            assert page.status_code == 200, page.text[:500]
            assert page.url.path == "/console" and 'data-testid="alarm-list"' in page.text
        print(f"console served {time.monotonic() - started:.1f} s after `ankang demo` started")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert "embedded PostgreSQL stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
