"""`python -m gui` says what to install instead of letting Qt abort (exit 134).

Nothing is faked: libraries are looked up with the real dynamic loader, and the app is
started as a real child process with the xcb platform. The library check is shown on a
name that exists nowhere and, on a machine that lacks Qt's xcb libraries (a bare Debian),
on the real ones; the display check on a display that is not set and one that does not answer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gui import startup_check as sc

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "liblit-opt-no-such-library.so.7"  # no system has it
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="xcb is Linux's")


def _run_gui(**env_changes) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update({"PYTHONPATH": str(ROOT), **env_changes})
    return subprocess.run([sys.executable, "-m", "gui"], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)


def _unused_display() -> str:
    n = 4242
    while Path(f"/tmp/.X11-unix/X{n}").exists():
        n += 1
    return f":{n}"


def test_a_library_the_loader_cannot_find_is_named_with_the_apt_line():
    assert sc.missing_libraries([NOWHERE, "libc.so.6"]) == [NOWHERE]
    message = sc.startup_problem(env={"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}, system="linux",
                                 libraries=(NOWHERE,), probe=False)
    assert NOWHERE in message and sc.APT_LINE in message and "cannot start" in message


@linux_only
def test_python_m_gui_with_xcb_and_no_display_exits_1_with_the_message_not_134():
    out = _run_gui(QT_QPA_PLATFORM="xcb")
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])  # Qt itself aborts: 134
    assert "lit_opt's app cannot start" in out.stderr
    missing = sc.missing_libraries()
    if missing:  # a bare system: the real missing libraries and the line that installs them
        assert sc.APT_LINE in out.stderr
        for name in missing:
            assert name in out.stderr and sc.XCB_LIBRARIES[name] in out.stderr
    assert "DISPLAY is not set" in out.stderr
    assert "Aborted" not in out.stderr and "Reinstalling the application" not in out.stderr


@linux_only
def test_python_m_gui_with_an_x_display_that_does_not_answer_exits_1():
    display = _unused_display()
    out = _run_gui(QT_QPA_PLATFORM="xcb", DISPLAY=display)
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    assert "lit_opt's app cannot start" in out.stderr
    if not sc.missing_libraries():
        assert f"DISPLAY={display} does not answer" in out.stderr


@linux_only
def test_the_display_check_connects_for_real():
    if sc.missing_libraries(["libxcb.so.1"]):
        pytest.skip("libxcb.so.1 is not installed")
    display = _unused_display()
    assert "does not answer" in sc.display_problem({"DISPLAY": display})
    assert "DISPLAY is not set" in sc.display_problem({})
    message = sc.startup_problem(env={"QT_QPA_PLATFORM": "xcb", "DISPLAY": display}, system="linux",
                                 libraries=("libxcb.so.1",), probe=False)
    assert "does not answer" in message and "xvfb-run" in message


@linux_only
def test_the_plugin_probe_reports_the_loaders_own_error(tmp_path):
    plugin = sc.xcb_plugin_path()
    if plugin is None:
        pytest.skip("PySide6 has no libqxcb.so here")
    # A copy of the real plugin, away from the Qt libraries its RPATH points at: it cannot load.
    shutil.copy(plugin, tmp_path / plugin.name)
    error = sc.probe_library(tmp_path / plugin.name)
    assert error is not None and "libQt6XcbQpa.so.6" in error
    real = sc.probe_library(plugin)
    missing = sc.missing_libraries()
    if missing:
        assert real is not None and any(name in real for name in missing)


def test_platforms_without_a_display_and_other_systems_are_not_checked():
    assert sc.startup_problem(env={"QT_QPA_PLATFORM": "offscreen"}, system="linux", libraries=(NOWHERE,)) is None
    assert sc.startup_problem(env={}, system="darwin", libraries=(NOWHERE,)) is None
    assert sc.startup_problem(env={}, system="win32", libraries=(NOWHERE,)) is None
    assert sc.platform_name({}) == "xcb"
    assert sc.platform_name({"QT_QPA_PLATFORM": "xcb:nograb"}) == "xcb"
    assert sc.platform_name({"QT_QPA_PLATFORM": "wayland;xcb"}) == "wayland"
    assert sc.platform_name({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}) == "wayland"


def test_the_readme_gives_the_same_apt_line():
    assert sc.APT_LINE in (ROOT / "README.md").read_text()
