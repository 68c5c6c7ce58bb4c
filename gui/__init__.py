"""lit_opt's desktop app (PySide6 + pyqtgraph): `python -m gui` or `lit-opt-gui`.

It imports lit_opt; lit_opt never imports it (nor Qt). Importing this package first
guards against PySide6 6.12.0's reference-count bug on Python 3.11 (see `gui._pyside_fix`).
"""

from gui import _pyside_fix  # noqa: F401  (must run before any signal is emitted)
