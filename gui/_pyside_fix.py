"""Work around PySide6 6.12.0's lost references to None/True/False on Python < 3.12.

PySide6/shiboken6 6.12.0 returns `None` from every void C++ method (`setText`, `start`,
`processEvents`, pyqtgraph's `setData` calls dozens) and `True` from `SignalInstance.emit`
without taking a reference, as if they were immortal (they are, since Python 3.12, PEP
683). On Python 3.11 each such call takes one reference away from the singleton; after
some thousands of calls its count reaches zero and the interpreter aborts with "Fatal
Python error: none_dealloc: deallocating None" (or bool_dealloc). Measured here: 50
`QLabel.setText` calls take exactly 50 references from None; 10 emits take 10 from True.

`apply()` probes for the bug and, only if it is there, gives None, True, False, Ellipsis
and NotImplemented a reference count they cannot run out of: what Python 3.12 does for
them anyway. With a fixed PySide6, or Python >= 3.12, it does nothing.
"""

from __future__ import annotations

import ctypes
import sys

_MARGIN = 1 << 40  # references: more than any process will lose
_SINGLETONS = (None, True, False, Ellipsis, NotImplemented)


def loses_references() -> bool:
    """True if void Qt calls or signal emits take references from None/True."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    none, true = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(16):
        probe.setObjectName("probe")  # void: returns None
        probe.ping.emit()  # returns True
    return sys.getrefcount(None) <= none - 8 or sys.getrefcount(True) <= true - 8


def apply() -> bool:
    """Make the singletons immortal if this PySide6 loses their references; True if it did."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False  # immortal there: lost references cannot hurt
    if not loses_references():
        return False
    for obj in _SINGLETONS:
        # ob_refcnt is the first field of every CPython object, at id(obj).
        ctypes.c_ssize_t.from_address(id(obj)).value += _MARGIN
    return True


APPLIED = apply()
