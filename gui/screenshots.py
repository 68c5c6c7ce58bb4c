"""`python -m gui --screenshot DIR`: train a short MNIST run in the real window and save
each view mid-run as a PNG (the README's pictures), then stop the run, draw a "7" in the
Draw tab with the run's checkpoint (app-draw.png), and exit.

    python -m gui.screenshots --draw RUNS DIR   # the Draw tab with RUNS' first run (a LeNet-5
                                                # run shows its feature maps): DIR/app-activations.png

Works offscreen (QT_QPA_PLATFORM=offscreen) as well as on a desktop. The run goes to a
temporary folder unless --runs is given.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from PySide6.QtCore import QEventLoop, QTimer

# deep MLP, SGD with momentum, a little L2: shows every view (the L2 term included).
DEMO_CONFIG = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 6},
    "model": {"net": "mlp", "net_args": {"hidden": "deep"}, "optimizer": "momentum", "lr": 0.05,
              "l2": 1e-4},
    "data": {"name": "mnist", "train_size": 20000, "val_size": 5000, "test_size": 2000, "batch_size": 100},
}


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Run the event loop until condition() holds (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    loop = QEventLoop()
    while not condition():
        if time.monotonic() > deadline:
            return False
        QTimer.singleShot(20, loop.quit)
        loop.exec()
    return True


def take_screenshots(out_dir: Path, data_dir: Optional[str] = None, runs_root: Optional[str] = None,
                     epochs_before: int = 3, compare: Optional[str] = None) -> int:
    from gui.main_window import MainWindow

    out_dir.mkdir(parents=True, exist_ok=True)
    root = runs_root or tempfile.mkdtemp(prefix="lit_opt_screens_")
    config = {**DEMO_CONFIG, "data": dict(DEMO_CONFIG["data"])}
    if data_dir or os.environ.get("LIT_OPT_DATA"):
        config["data"]["data_dir"] = data_dir or os.environ["LIT_OPT_DATA"]
    window = MainWindow(runs_root=root, config=config)
    window.show()
    if not wait_until(lambda: window.is_ready, 120):
        print("error: PyTorch did not load within 2 minutes")
        return 1
    window.start()
    rec = lambda: window.running  # noqa: E731
    got = wait_until(lambda: (rec() is not None and len(rec().epochs) >= epochs_before)
                     or not window.is_running, 600)
    if not got or not window.is_running:
        print(f"error: the run ended early: {window.message.text()}")
        window.dispose()
        return 1
    wait_until(lambda: False, 0.6)  # a few more steps of the next epoch on the curves
    written = []
    for view in window.views:  # every registered view: app-curves.png, app-diagnostics.png, ...
        window.tabs.setCurrentWidget(view)
        wait_until(lambda: False, 0.3)
        name = view.tab_title.lower().split()[0]
        path = out_dir / f"app-{name}.png"
        window.grab().save(str(path))
        written.append(path)
    window.stop()
    wait_until(lambda: not window.is_running, 60)
    window.rescan()  # the run's checkpoint reaches the Draw tab
    shot = _landscape_shot(window, out_dir / "app-landscape.png")
    if shot is not None:
        written.append(shot)
    drawn = _draw_shot(window, out_dir / "app-draw.png")
    if drawn is not None:
        written.append(drawn)
    window.playground.function.setCurrentText("rosenbrock")
    window.tabs.setCurrentWidget(window.playground)
    wait_until(lambda: not window.playground.is_animating(), 30)
    path = out_dir / "app-playground.png"
    window.grab().save(str(path))
    written.append(path)
    if compare:
        written.append(_compare_shot(window, Path(compare), out_dir))
    window.dispose()
    for path in written:
        print(f"wrote {path}")
    return 0


def _landscape_shot(window, path: Path) -> Optional[Path]:
    """The Landscape tab's line from the stopped run's initial weights to its best checkpoint."""
    from gui.views.landscape import LandscapeView

    view = window.view(LandscapeView)
    shown = window.run_list.shown()
    if not shown:
        return None
    window.run_list.select(shown[0])
    window.tabs.setCurrentWidget(view)
    view.mode.setCurrentIndex(0)  # line from init
    done = []
    view.computed.connect(done.append)
    view.compute()
    if not wait_until(lambda: bool(done), 300) or "error" in done[0]:
        print(f"warning: no landscape picture: {done[0].get('error') if done else 'it took over 5 minutes'}")
        return None
    wait_until(lambda: False, 0.4)
    window.grab().save(str(path))
    return path


def _compare_shot(window, runs: Path, out_dir: Path) -> Path:
    """Every run in `runs` ticked and compared by epoch, as a user opening a study folder would."""
    window.form._fields["run.root"].set_value(str(runs))
    window.rescan()
    shown = [r for r in window.run_list.shown() if r.run_dir.parent.resolve() == runs.resolve()]
    for rec in shown:
        window.run_list.set_ticked(rec)
    window.tabs.setCurrentWidget(window.curves)
    window.curves.x_axis.setCurrentIndex(window.curves.x_axis.findData("epoch"))
    window.curves.smoothing.setValue(0.95)
    wait_until(lambda: False, 1.0)
    path = out_dir / "app-compare.png"
    window.grab().save(str(path))
    return path


# A "7" as a person draws it on the 280x280 canvas: the top bar, then the diagonal.
SEVEN = [[(70, 62), (140, 58), (208, 60)], [(208, 60), (170, 140), (128, 232)]]


def draw_strokes(tab, strokes=SEVEN, steps: int = 12) -> None:
    """Draw polylines on the Draw tab's canvas as the mouse would, ending each stroke."""
    from PySide6.QtCore import QPointF

    for points in strokes:
        last = QPointF(*points[0])
        tab.canvas.draw_line(last, last)
        for a, b in zip(points[:-1], points[1:]):
            for t in range(1, steps + 1):
                p = QPointF(a[0] + (b[0] - a[0]) * t / steps, a[1] + (b[1] - a[1]) * t / steps)
                tab.canvas.draw_line(last, p)
                last = p
        tab.canvas.stroke_finished.emit()


def _draw_shot(window, path: Path) -> Optional[Path]:
    """The Draw tab with a "7" drawn, classified by the tab's first checkpoint."""
    tab = window.draw_tab
    if tab is None or tab.chooser.count() == 0:
        print("note: no Draw tab or no checkpoint for it: no Draw screenshot")
        return None
    window.tabs.setCurrentWidget(tab)  # a checkpoint chosen while hidden loads when shown
    if not wait_until(lambda: tab.model is not None, 120):
        print(f"error: the Draw tab loaded no checkpoint: {tab.status.text()}")
        return None
    tab.clear()
    draw_strokes(tab)
    wait_until(lambda: not tab.is_classifying, 30)  # the passes run in a worker thread
    wait_until(lambda: False, 0.4)
    window.grab().save(str(path))
    return path


def draw_screenshot(runs_root: Path, out_dir: Path) -> int:
    """The window over `runs_root`, its Draw tab with a "7": out_dir/app-activations.png."""
    from gui.main_window import MainWindow

    out_dir.mkdir(parents=True, exist_ok=True)
    window = MainWindow(runs_root=str(runs_root))
    window.show()
    if not wait_until(lambda: window.is_ready, 120):
        print("error: PyTorch did not load within 2 minutes")
        return 1
    path = _draw_shot(window, out_dir / "app-activations.png")
    window.dispose()
    if path is None:
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    import argparse
    import sys

    from PySide6.QtWidgets import QApplication

    import gui  # noqa: F401  (the PySide6 6.12.0 guard, before any signal)

    parser = argparse.ArgumentParser(prog="python -m gui.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--draw", nargs=2, metavar=("RUNS", "DIR"), required=True,
                        help="runs folder whose first run's checkpoint the Draw tab uses; folder for the PNG")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    sys.exit(draw_screenshot(Path(args.draw[0]), Path(args.draw[1])))
