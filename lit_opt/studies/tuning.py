"""The learning-rate choice of a comparison: among runs that differ only in the learning rate
(a family: one optimizer on one dataset), which rate is chosen, on validation accuracy only.

    select_learning_rates(groups)                 # tune all_seeds: the highest mean best val acc
    select_learning_rates(groups, tune_seed=0)    # tune first_seed: seed 0's run alone
    choose_index([0.91, None, 0.95, 0.95])        # 2: None (diverged) loses, a tie goes to the first

Used by the report (which group is "chosen") and by the runner's stage 2 of `tune: first_seed`
(which rate the other seeds run at), so both make the same choice from the same folders.
Its own module, apart from results.py, so that a study process started before it existed
still writes its report with this code.
"""

from __future__ import annotations

from typing import Optional

from lit_opt.studies.results import Group, canonical, numeric


def choose_index(scores: list[Optional[float]]) -> Optional[int]:
    """The index of the highest score; None scores (a diverged run, no run, no validation
    accuracy) lose; a tie goes to the first (callers list learning rates ascending: the
    smaller rate). None when every score is None."""
    best = None
    for i, score in enumerate(scores):
        if score is not None and (best is None or score > scores[best]):
            best = i
    return best


def tuning_score(group: Group, seed) -> Optional[float]:
    """A group's best validation accuracy on the tuning seed's run alone; None when that run
    did not finish (diverged, interrupted, missing) or has no validation accuracy."""
    runs = [r for r in group.finished if r.seed == seed]
    return runs[0].metric("best_val_acc") if runs else None


def lr_families(groups: list[Group], lr_key: str = "model.lr") -> list[list[Group]]:
    """Groups that differ only in the learning rate, each family in the groups' order."""
    families: dict[str, list[Group]] = {}
    for g in groups:
        families.setdefault(canonical({k: v for k, v in g.values.items() if k != lr_key}), []).append(g)
    return list(families.values())


def select_learning_rates(groups: list[Group], lr_key: str = "model.lr", tune_seed=None) -> None:
    """DeepOBS-style: among groups that differ only in the learning rate, keep the one with the
    highest mean best validation accuracy (groups with no finished run rank last; a tie goes
    to the smaller rate). With `tune_seed` (a study run with `tune: first_seed`), the score is
    that seed's run alone, the run the study chose on; a family where it did not finish at
    any of two or more rates has no group selected."""
    for family in lr_families(groups, lr_key):
        family = sorted(family, key=lambda g: (numeric(g.values.get(lr_key)) is None,
                                               numeric(g.values.get(lr_key)) or 0.0))
        if tune_seed is None:
            scores = [g.stat("best_val_acc")[0] for g in family]
            best = choose_index(scores)
            best = 0 if best is None else best
        elif len(family) == 1:
            best = 0  # a single rate: nothing was chosen, every seed ran at it
        else:
            best = choose_index([tuning_score(g, tune_seed) for g in family])
        for i, g in enumerate(family):
            g.selected = i == best
