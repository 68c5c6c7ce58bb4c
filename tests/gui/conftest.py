"""Qt tests run offscreen (set before any QApplication exists) under pytest-qt."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
