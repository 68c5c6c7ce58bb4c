"""Stepping a registry optimizer by hand on a loss function, outside Lightning: the toy
problems (lit_opt/toy.py) and the seminar's worked examples (lit_opt/worked.py) both use it."""

from __future__ import annotations

from typing import Callable

from lit_opt.optim.registry import build, info


def optimizer_steps(params, optimizer: str, loss_fn: Callable, n: int, **hp):
    """Take n registry-optimizer steps on loss_fn; yields after each. SAM gets its closure."""
    opt = build(optimizer, params, **hp)
    needs_closure = info(optimizer).needs_closure

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    for _ in range(n):
        closure()
        opt.step(closure) if needs_closure else opt.step()
        yield
