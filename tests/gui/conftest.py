"""Qt tests run offscreen (set before any QApplication exists) under pytest-qt.

`gui` is imported first: it guards against PySide6 6.12.0's reference-count bug on
Python 3.11 (gui/_pyside_fix.py), which otherwise aborts a long test session.
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import gui  # noqa: E402,F401
import pytest  # noqa: E402


def small_config(data_dir, root, epochs: int = 1, train_size: int = 2000, batch_size: int = 100,
                 **model) -> dict:
    """A seconds-long MNIST run: small subsets, runs under `root`, no progress output."""
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": epochs, "accelerator": "cpu", "devices": 1},
        "model": {"net": "mlp", "net_args": {"hidden": "shallow"}, "optimizer": "adam", **model},
        "data": {"name": "mnist", "data_dir": str(data_dir), "train_size": train_size, "val_size": 500,
                 "test_size": 500, "batch_size": batch_size},
        "run": {"root": str(root), "test": False},
    }
    return config


@pytest.fixture
def pace(monkeypatch):
    """Sleep 20 ms after every training batch of the runs in this test, so a tiny run lasts long
    enough to stop mid-epoch. It changes no number, and it is not in the run's config (a
    config.yaml that names a callback is not resumed by itself: lit_opt/found_config.py)."""
    import time

    from lit_opt.stream import LiveStream

    on_batch_end = LiveStream.on_train_batch_end

    def paced(self, *args):
        on_batch_end(self, *args)
        time.sleep(0.02)

    monkeypatch.setattr(LiveStream, "on_train_batch_end", paced)


@pytest.fixture
def make_window(qtbot):
    """make_window(runs_root, config=None): the real window, shown, with torch loaded."""
    from gui.main_window import MainWindow

    windows = []

    def make(runs_root, config=None):
        window = MainWindow(runs_root=runs_root, config=config)
        qtbot.addWidget(window)
        window.show()
        if not window.is_ready:
            with qtbot.waitSignal(window.ready, timeout=120_000):
                pass
        windows.append(window)
        return window

    yield make
    for window in windows:  # never leave a thread running behind a closed window
        window.shutdown()
        qtbot.waitUntil(lambda: not window.is_running and window._import_thread is None, timeout=60_000)
