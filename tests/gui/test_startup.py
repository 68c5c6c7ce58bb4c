"""The window shows before torch and Lightning load; they load after, in the background."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from PySide6.QtWidgets import QApplication
app = QApplication([])
from gui.main_window import MainWindow
window = MainWindow(runs_root=sys.argv[1])
window.show()
heavy = [m for m in ("torch", "lightning") if m in sys.modules]
app.processEvents()  # paints the window; the background import may begin now
shown = {"seconds": time.perf_counter() - t0, "heavy": heavy, "visible": window.isVisible(),
         "status": window.status_line.text(), "start_enabled": window.start_button.isEnabled()}
from PySide6.QtCore import QEventLoop, QTimer
loop = QEventLoop(); window.ready.connect(loop.quit); QTimer.singleShot(120000, loop.quit); loop.exec()
ready = {"heavy": [m for m in ("torch", "lightning") if m in sys.modules], "status": window.status_line.text(),
         "start_enabled": window.start_button.isEnabled()}
window.dispose()
print(json.dumps({"shown": shown, "ready": ready}))
"""


def test_window_shows_before_torch_loads_then_loads_it(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    shown, ready = result["shown"], result["ready"]
    assert shown["heavy"] == [] and shown["visible"]  # shown before torch/Lightning were imported
    assert "Loading PyTorch" in shown["status"] and not shown["start_enabled"]
    assert ready["heavy"] == ["torch", "lightning"]
    assert ready["status"].startswith("Ready") and ready["start_enabled"]


def test_lit_opt_never_imports_qt():
    for path in (ROOT / "lit_opt").rglob("*.py"):
        text = path.read_text()
        for name in ("PySide", "PyQt", "pyqtgraph", "from gui", "import gui"):
            assert name not in text, f"{path} mentions {name}"
