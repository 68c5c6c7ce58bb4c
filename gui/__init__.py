"""lit_opt's desktop app (PySide6 + pyqtgraph): `python -m gui` or `lit-opt-gui`.

It imports lit_opt; lit_opt never imports it (nor Qt).
"""
