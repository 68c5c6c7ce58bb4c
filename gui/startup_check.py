"""Can Qt open a window here? Checked before the QApplication exists.

On Linux, Qt's xcb platform plugin needs a dozen system libraries that a bare Debian or
Ubuntu lacks (libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, ...). When one is missing
Qt does not raise: it prints "Reinstalling the application may fix this problem" and
aborts the process (SIGABRT, exit code 134); so does a missing or unreachable X display.
`startup_problem()` finds these cases first, with the dynamic loader itself (the same
lookup Qt's own loading does), and returns a message naming what is missing and the one
`apt-get install` line that fixes it; `python -m gui` prints it and exits with code 1.

Nothing here imports Qt, and nothing is faked: a library counts as present only when the
loader really loads it. macOS and Windows need no system packages (the PySide6 wheel has
everything), and the offscreen, minimal, VNC, EGLFS and other platforms are not checked.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional

# Every system library the PySide6 wheel's QtCore/QtGui/QtWidgets and its xcb platform
# plugin (libqxcb.so -> libQt6XcbQpa.so.6) link against, from `readelf -d`/`ldd`, with the
# Debian/Ubuntu package that holds it. libc, libstdc++ and zlib are left out: Python's own.
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}
APT_PACKAGES: list[str] = list(dict.fromkeys(XCB_LIBRARIES.values()))
APT_LINE = "sudo apt-get install " + " ".join(APT_PACKAGES)

# Platforms that draw into no X or Wayland display: nothing to check.
_NO_DISPLAY_PLATFORMS = {"offscreen", "minimal", "minimalegl", "vnc", "linuxfb", "eglfs", "vkkhrdisplay"}


def platform_name(env: Mapping[str, str] = os.environ) -> str:
    """The Qt platform plugin a QApplication will load on Linux: the first of
    QT_QPA_PLATFORM (options after ':' dropped), else wayland in a Wayland session, else xcb."""
    requested = env.get("QT_QPA_PLATFORM", "").strip()
    if requested:
        return requested.split(";")[0].split(":")[0].strip().lower()
    if env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE", "").lower() == "wayland":
        return "wayland"
    return "xcb"


def missing_libraries(names=tuple(XCB_LIBRARIES)) -> list[str]:
    """The libraries among `names` that the dynamic loader cannot load (dlopen by soname:
    ld.so.cache, the system folders and LD_LIBRARY_PATH, exactly as when Qt loads them)."""
    missing = []
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.append(name)
    return missing


def xcb_plugin_path() -> Optional[Path]:
    """PySide6's libqxcb.so, found without importing Qt (None if this is not a wheel layout)."""
    spec = importlib.util.find_spec("PySide6")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if path.is_file():
            return path
    return None


def probe_library(path: Path, timeout: float = 30.0) -> Optional[str]:
    """Load a shared library in a child process; the loader's error if it cannot, else None.
    A child, so a library whose loading crashes or aborts takes only the child down."""
    code = "import ctypes, sys\ntry:\n    ctypes.CDLL(sys.argv[1])\nexcept OSError as e:\n" \
           "    print(e); sys.exit(3)\n"
    try:
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                             timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not probe {path}: {exc}"
    if out.returncode == 0:
        return None
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[-1] if text else f"loading {path} ended with exit code {out.returncode}"


def display_problem(env: Mapping[str, str] = os.environ) -> Optional[str]:
    """Why no X display can be reached (None when one answers). Needs libxcb.so.1."""
    display = env.get("DISPLAY", "")
    if not display:
        where = " (WAYLAND_DISPLAY is set, but QT_QPA_PLATFORM asks for xcb)" if env.get("WAYLAND_DISPLAY") else ""
        return f"no display: DISPLAY is not set{where}, so the window has nowhere to open."
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return None  # reported as a missing library
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    try:
        error = xcb.xcb_connection_has_error(connection) if connection else -1
    finally:
        if connection:
            xcb.xcb_disconnect(connection)
    if error:
        return f"no display: the X display DISPLAY={display} does not answer (xcb error {error})."
    return None


_NO_DISPLAY_HELP = ("Start the app in a desktop session, over `ssh -X`, or under a virtual display: "
                    "`xvfb-run python -m gui`. Screenshots need no display: "
                    "`QT_QPA_PLATFORM=offscreen python -m gui --screenshot DIR`.")


def startup_problem(env: Mapping[str, str] = os.environ, system: str = sys.platform,
                    libraries=tuple(XCB_LIBRARIES), plugin: Optional[Path] = None,
                    probe: bool = True) -> Optional[str]:
    """A message saying why Qt would abort on start-up here, or None when it can start.

    Linux with the xcb platform only: first the system libraries (`libraries`; then, if they
    all load, PySide6's xcb plugin itself in a child process, which catches any library not
    in the list), then the X display."""
    if not system.startswith("linux"):
        return None  # macOS, Windows: the PySide6 wheel brings everything
    platform = platform_name(env)
    if platform != "xcb":
        return None  # offscreen, minimal, vnc, ...: no X; wayland: its own plugin and session
    missing = missing_libraries(libraries)
    plugin_error = None
    if not missing and probe:
        plugin = plugin or xcb_plugin_path()
        plugin_error = probe_library(plugin) if plugin else None
    if missing or plugin_error:
        packages = list(dict.fromkeys(XCB_LIBRARIES.get(name, name) for name in missing))
        lines = ["lit_opt's app cannot start: Qt's X11 (xcb) platform needs system libraries that are "
                 "not installed here."]
        if missing:
            lines.append("Missing: " + ", ".join(f"{name} ({XCB_LIBRARIES.get(name, '?')})" for name in missing)
                         + ".")
        if plugin_error:
            lines.append(f"Loading Qt's xcb plugin fails: {plugin_error}")
        lines.append("On Debian/Ubuntu, install them (all the packages the app needs, in one line):")
        lines.append(f"    {APT_LINE}")
        if packages and set(packages) != set(APT_PACKAGES):
            lines.append(f"(the ones missing now: sudo apt-get install {' '.join(packages)})")
        lines.append("On other distributions install the packages that provide these libraries.")
        if not env.get("DISPLAY"):
            lines.append(f"Once they are installed: {display_problem(env)} {_NO_DISPLAY_HELP}")
        return "\n".join(lines)
    problem = display_problem(env)
    if problem:
        return f"lit_opt's app cannot start: {problem}\n{_NO_DISPLAY_HELP}"
    return None
