"""Torch's thread count for one command run in-process (`sharpness`, `landscape`).

On a shared 2-core machine two OpenMP threads that wait for a core made these commands 9-13x
slower (docs/performance.md), so they take `--threads`; called from a program or a test, they
leave the caller's setting as it was.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

THREADS_ERROR = "--threads must be 0 (torch's default) or a number of threads >= 1; got {}"


def threads_problem(threads: int) -> Optional[str]:
    """The message for a bad --threads, or None."""
    return THREADS_ERROR.format(threads) if threads < 0 else None


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with `threads` torch threads (0: torch's own default), then restore."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
