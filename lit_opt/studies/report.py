"""`python -m lit_opt report RUN_FOLDERS...`: one report for any set of finished runs.

    python -m lit_opt report checkpoints/studies/l2                         # a study folder -> studies/l2/report/
    python -m lit_opt report checkpoints/run-a checkpoints/run-b --out my_report
    python -m lit_opt report checkpoints --target 0.97          # every run folder under checkpoints/

Runs are grouped by their config minus the seed; a group's numbers are the mean +- std
(sample std) over its finished runs. The report folder holds:

    report.md            the tables, figures and commands
    groups.csv           one row per group: test accuracy and loss (mean, std), best validation
                         accuracy and epoch, epochs and training seconds to the target validation
                         accuracy, seconds per epoch, the command of its first run
    trials.csv           one row per run: state (finished, diverged, interrupted, missing), metrics
    class_accuracy.csv   per group, test accuracy per class (from confusion_test.csv)
    curves.png, test_acc.png, epoch_time.png, lr_sensitivity.png, weights.png,
    update_ratios.png, best_confusion_test.png

When the learning rate and the optimizer vary (a comparison), each optimizer's learning rate
is chosen on the mean best validation accuracy (as DeepOBS does) and the first table shows
the chosen ones; the test set never takes part in the choice. A study run with `tune:
first_seed` (its study.json says so) chose on its first seed's runs alone: the report says
which rate was chosen on which seed, that the other seeds ran only at it, and shows that
seed's validation and test accuracy against the learning rate (table and
lr_sensitivity.png).
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

from lit_opt.studies import figures
from lit_opt.studies.results import (
    Group,
    Run,
    find_runs,
    group_runs,
    numeric,
    varying_keys,
)
from lit_opt.studies.tuning import lr_families, select_learning_rates, tuning_score
from lit_opt.studies.spec import label_value, short_key


def _fmt(mean: Optional[float], std: Optional[float] = None, digits: int = 4) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _num(value: Optional[float]) -> str:
    return "" if value is None else repr(float(value))


def default_target(groups: list[Group]) -> Optional[float]:
    """95 % of the best group's mean best validation accuracy, rounded down to 0.01."""
    best = [g.stat("best_val_acc")[0] for g in groups]
    best = [b for b in best if b is not None]
    return math.floor(95 * max(best)) / 100 if best else None


def _notes(group: Group) -> str:
    notes = []
    for run in group.diverged:
        d = run.diverged or {}
        notes.append(f"seed {run.seed} diverged at step {d.get('step')}")
    for run in group.runs:
        if run.state in ("interrupted", "missing"):
            notes.append(f"seed {run.seed if run.seed is not None else run.name} {run.state}")
    return "; ".join(notes)


def group_row(group: Group, keys: list[str], target: Optional[float]) -> dict:
    """groups.csv's row: full-precision numbers."""
    row = {short_key(k): label_value(group.values[k]) for k in keys}
    row.update({"group": group.label, "selected": group.selected, "runs": len(group.runs),
                "finished": len(group.finished), "diverged": len(group.diverged),
                "seeds": " ".join(str(r.seed) for r in group.runs)})
    for metric, name in (("test/acc", "test_acc"), ("test/loss", "test_loss"), ("best_val_acc", "best_val_acc"),
                         ("best_epoch", "best_epoch"), ("epochs", "epochs"), ("epoch_time", "epoch_time")):
        mean, std = group.stat(metric)
        row[f"{name}_mean"], row[f"{name}_std"] = _num(mean), _num(std)
    epochs, seconds, hits = group.to_target(target) if target is not None else (None, None, 0)
    row.update({"target_val_acc": _num(target), "epochs_to_target": _num(epochs),
                "seconds_to_target": _num(seconds), "reached_target": f"{hits}/{len(group.finished)}",
                "notes": _notes(group), "command": group.runs[0].command if group.runs else ""})
    return row


def targets_of(groups: list[Group], target: Optional[float]) -> dict[int, Optional[float]]:
    """Each group's target validation accuracy: the one given, else per dataset the default."""
    if target is not None:
        return {id(g): target for g in groups}
    datasets: dict[str, list[Group]] = {}
    for g in groups:
        key = f"{g.values.get('data.name')} {g.values.get('data.data_dir')}"
        datasets.setdefault(key, []).append(g)
    return {id(g): default_target(part) for part in datasets.values() for g in part}


def _md_table(groups: list[Group], keys: list[str], targets: dict[int, Optional[float]]) -> list[str]:
    values = {targets[id(g)] for g in groups}
    one = values.pop() if len(values) == 1 else None
    head = [*(short_key(k) for k in keys), "seeds", "test acc", "test loss", "best val acc", "best epoch",
            "epochs", *([] if one else ["target"]), f"epochs to {one:.2f}" if one else "epochs to target",
            f"s to {one:.2f}" if one else "s to target", "s / epoch", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        target = targets[id(g)]
        epochs, seconds, hits = g.to_target(target) if target is not None else (None, None, 0)
        reach = "-" if not hits else (f"{epochs:.1f}" + ("" if hits == len(g.finished) else f" ({hits}/{len(g.finished)})"))
        cells = [*(label_value(g.values[k]) for k in keys), f"{len(g.finished)}/{len(g.runs)}",
                 _fmt(*g.stat("test/acc")), _fmt(*g.stat("test/loss")), _fmt(*g.stat("best_val_acc")),
                 _fmt(g.stat("best_epoch")[0], None, 1), _fmt(g.stat("epochs")[0], None, 0),
                 *([] if one else [_fmt(target, None, 2)]), reach,
                 _fmt(seconds, None, 1) if hits else "-", _fmt(*g.stat("epoch_time"), digits=2), _notes(g)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _class_table(groups: list[Group], keys: list[str]) -> tuple[list[str], list[dict]]:
    """Markdown lines (one table per set of class names, when there are at most 20) and CSV rows."""
    by_names: dict[tuple, list] = {}
    for g in groups:
        acc = g.class_acc()
        if acc:
            by_names.setdefault(tuple(acc), []).append((g, acc))
    lines, rows = [], []
    for names, accs in by_names.items():
        rows += [{"group": g.label, **{n: _num(a.get(n)) for n in names}} for g, a in accs]
        if len(names) > 20:
            continue
        head = [*(short_key(k) for k in keys), *names]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for g, a in accs:
            lines.append("| " + " | ".join([*(label_value(g.values[k]) for k in keys),
                                            *(_fmt(a.get(n), None, 3) for n in names)]) + " |")
        lines.append("")
    return lines, rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def trial_row(run: Run, group: Group) -> dict:
    row = {"trial": run.name, "state": run.state, "group": group.label, "seed": run.seed}
    for metric in ("test/acc", "test/loss", "best_val_acc", "best_epoch", "epochs", "epoch_time"):
        row[metric] = _num(run.metric(metric))
    row["diverged_step"] = (run.diverged or {}).get("step", "")
    row["path"], row["command"] = str(run.path), run.command
    return row


def write_report(paths: Sequence, out: Path, target: Optional[float] = None, title: str = "") -> Path:
    """Read the runs under `paths`, write the report folder `out`; returns out/report.md."""
    runs, studies = find_runs(paths)
    if not runs:
        raise FileNotFoundError(f"no run folders (with a config.yaml) in {', '.join(map(str, paths))}")
    study = studies[0] if len(studies) == 1 else {}
    keys = varying_keys(runs, first=study.get("keys") or ())
    groups = group_runs(runs, keys)
    kind = study.get("kind") or ("compare" if "model.optimizer" in keys else "sweep")
    tune_seed = study.get("tune_seed") if study.get("tune") == "first_seed" else None
    if kind == "compare" and "model.lr" in keys:
        select_learning_rates(groups, tune_seed=tune_seed)
    given = target if target is not None else study.get("target")
    targets = targets_of(groups, given)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    _write_csv(out / "groups.csv", [group_row(g, keys, targets[id(g)]) for g in groups])
    _write_csv(out / "trials.csv", [trial_row(r, g) for g in groups for r in g.runs])
    class_lines, class_rows = _class_table([g for g in groups if g.selected], keys)
    _write_csv(out / "class_accuracy.csv", class_rows)

    states = {s: sum(r.state == s for r in runs) for s in ("finished", "diverged", "interrupted", "missing")}
    md = [f"# {title or 'Study report'}: {', '.join(str(p) for p in paths)}", ""]
    md.append(f"{len(runs)} runs in {len(groups)} groups ({kind}): "
              + ", ".join(f"{n} {s}" for s, n in states.items() if n) + ".")
    if study.get("source"):
        md += ["", f"Made by `{study['source']}` (in {study.get('cwd', '.')})."]
    shown_targets = sorted({f"{t:.2f}" for t in targets.values() if t is not None})
    what = given if given is not None else (" / ".join(shown_targets) or "-") + (
        " (95% of the best group's best val acc, floored" + (", per dataset)" if len(shown_targets) > 1 else ")"))
    md += ["", (f"Numbers are mean ± sample std over each group's finished runs (seeds). Test accuracy and "
                f"loss are of each run's best.ckpt (highest val/acc) on the test set; the best epoch is 1-based; "
                f"epochs and seconds to target count training time only (validation excluded) until val/acc "
                f"first reached {what}, averaged over the runs that "
                f"reached it; s / epoch is the mean of train/epoch_time."), ""]
    shown = [g for g in groups if g.selected]
    tuning = _tuning_groups(groups, tune_seed) if tune_seed is not None and "model.lr" in keys else []
    if tuning:
        md += _tuning_section(groups, tuning, keys, tune_seed, sorted({r.seed for r in runs if r.seed is not None}))
    if kind == "compare" and len(shown) < len(groups):
        md += ["## Chosen learning rates", "",
               (f"Each optimizer's learning rate chosen on seed {tune_seed}'s best validation accuracy (above); "
                f"mean ± std over every seed at that rate." if tuning else
                "Each optimizer's learning rate chosen on the highest mean best validation accuracy."), ""]
        md += _md_table(shown, keys, targets) + ["", "## Every learning rate", ""]
        if tuning:
            md += [f"The rates not chosen ran with seed {tune_seed} only.", ""]
        md += _md_table(groups, keys, targets)
    else:
        md += ["## Results", ""] + _md_table(groups, keys, targets)
    if class_lines:
        md += ["", "## Test accuracy per class", ""] + class_lines

    pictures = _figures(groups, shown, keys, kind, out, study.get("keys") or [], tuning, tune_seed)
    if pictures:
        md += ["", "## Figures", ""]
        for name, caption in pictures:
            md += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    md += ["## Commands", "", ("Each run again (in the folder the study ran from; a new --run.name "
                               "avoids the existing folder):"), "", "```"]
    for g in groups:
        md += [f"# {g.label}"] + [r.command for r in g.runs]
    md += ["```", ""]
    (out / "report.md").write_text("\n".join(md))
    return out / "report.md"


def _tuning_groups(groups: list[Group], seed) -> list[Group]:
    """Each group's run with the tuning seed alone (what a first_seed study chose on)."""
    return [Group(g.values, [r for r in g.runs if r.seed == seed], g.selected) for g in groups]


def _tuning_section(groups: list[Group], tuning: list[Group], keys: list[str], seed, seeds: list) -> list[str]:
    """tune first_seed: which rate was chosen per family, on which seed, and the sensitivity table."""
    family_keys = [k for k in keys if k != "model.lr"]
    others = ", ".join(str(s) for s in seeds if s != seed) or "none"
    md = ["## Learning-rate choice (tune: first_seed)", "",
          (f"Two stages, as DeepOBS: each optimizer's learning-rate grid ran with seed {seed} only (stage 1); "
           f"per {' and '.join(short_key(k) for k in family_keys) or 'optimizer'}, the rate with the highest best "
           f"validation accuracy of seed {seed} was chosen (diverged runs lose, a tie goes to the smaller rate, "
           f"the test set takes no part), and the other seeds ({others}) ran only at that rate (stage 2). An "
           f"optimizer with a single rate had nothing to choose: every seed ran at it."), ""]
    head = [*(short_key(k) for k in family_keys), "chosen lr", f"seed {seed}: best val acc per lr",
            "seeds at the chosen lr"]
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_id = {id(g): t for g, t in zip(groups, tuning)}
    for family in lr_families(groups):
        family = sorted(family, key=lambda g: numeric(g.values.get("model.lr")) or 0.0)
        chosen = [g for g in family if g.selected]
        cells = []
        for g in family:
            run = by_id[id(g)].runs[0] if by_id[id(g)].runs else None
            score = tuning_score(g, seed)
            text = _fmt(score) if score is not None else (run.state if run is not None else "no run")
            lr = label_value(g.values.get("model.lr"))
            cells.append(f"**{lr}: {text}**" if g.selected and len(family) > 1 else f"{lr}: {text}")
        if len(family) == 1:
            lr_cell = f"{label_value(family[0].values.get('model.lr'))} (the only one)"
        elif chosen:
            lr_cell = label_value(chosen[0].values.get("model.lr"))
        else:
            lr_cell = f"none (no rate finished with seed {seed})"
        at = ", ".join(str(r.seed) for r in chosen[0].runs) if chosen else "-"
        md.append("| " + " | ".join([*(label_value(family[0].values[k]) for k in family_keys), lr_cell,
                                      ", ".join(cells), at]) + " |")
    md += ["", f"### Learning-rate sensitivity (seed {seed})", "",
           f"Seed {seed}'s run at each rate (stage 1): the choice above is made on its best validation accuracy; "
           f"its test accuracy is shown for the sensitivity only.", ""]
    head = [*(short_key(k) for k in keys), "chosen", "best val acc", "test acc", "best epoch", "notes"]
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in tuning:
        md.append("| " + " | ".join([*(label_value(t.values[k]) for k in keys), "yes" if t.selected else "",
                                      _fmt(t.stat("best_val_acc")[0]), _fmt(t.stat("test/acc")[0]),
                                      _fmt(t.stat("best_epoch")[0], None, 0), _notes(t)]) + " |")
    return md + [""]


def _figures(groups: list[Group], shown: list[Group], keys: list[str], kind: str, out: Path,
             study_keys: list[str], tuning: Sequence[Group] = (), tune_seed=None) -> list[tuple[str, str]]:
    pictures: list[tuple[str, str]] = []

    def add(draw, caption):
        """Draw one figure; a figure that cannot be drawn is reported and left out, never fatal."""
        try:
            path = draw()
        except Exception as exc:  # noqa: BLE001
            print(f"warning: figure left out ({caption}): {type(exc).__name__}: {exc}", file=sys.stderr)
            return
        if path is not None:
            pictures.append((Path(path).name, caption))

    row_key = "data.name" if "data.name" in keys else None
    add(lambda: figures.curves(shown, out / "curves.png", row_key),
        "Training loss, validation loss and validation accuracy per epoch, mean over seeds with a ±1 std band"
        + (" (chosen learning rate of each optimizer)" if kind == "compare" else ""))
    if kind == "compare" and tuning:
        add(lambda: figures.lr_sensitivity(list(tuning), out / "lr_sensitivity.png", test=True, seed=tune_seed),
            f"Seed {tune_seed}'s best validation accuracy (solid) and test accuracy (dashed) against the learning "
            f"rate per optimizer (stage 1); the rate chosen on validation is starred")
    elif kind == "compare":
        add(lambda: figures.lr_sensitivity(groups, out / "lr_sensitivity.png"),
            "Best validation accuracy against the learning rate per optimizer; the chosen one is starred")
    if kind == "sweep" and keys:
        key, line = _axes(keys, study_keys, groups)
        what = short_key(key) if key else "group"
        add(lambda: figures.metric_vs_value(groups, key, "test/acc", "test accuracy", out / "test_acc.png", line),
            f"Test accuracy against {what} (mean ± std over seeds; red x: diverged)")
        add(lambda: figures.metric_vs_value(groups, key, "epoch_time", "seconds per training epoch",
                                    out / "epoch_time.png", line),
            f"Training time per epoch against {what} (validation excluded)")
        if key and numeric(groups[0].values.get(key)) is not None and line is None and len(groups) >= 3:
            add(lambda: figures.first_layer_weights(groups, key, out / "weights.png"),
                f"First-layer weights (8 units, the same in each row) at the smallest, middle and largest "
                f"{short_key(key)}")
    add(lambda: figures.update_ratios(shown, out / "update_ratios.png"),
        "Each layer's update/weight ratio ||delta w|| / ||w|| against the step (the first run of each group; "
        "dashed: the 1e-3 rule of thumb)")
    tested = [g for g in shown if g.finished and g.stat("test/acc")[0] is not None]  # none with --run.test false
    best = max(tested, key=lambda g: g.stat("test/acc")[0], default=None)
    if best is not None and (best.finished[0].path / "confusion_test.png").is_file():
        shutil.copyfile(best.finished[0].path / "confusion_test.png", out / "best_confusion_test.png")
        add(lambda: out / "best_confusion_test.png",
            f"Test confusion matrix of {best.finished[0].name} (the group with the highest mean test "
            f"accuracy: {best.label})")
    return pictures


def _axes(keys: list[str], study_keys: list[str], groups: list[Group]) -> tuple[Optional[str], Optional[str]]:
    """The x key and the one-line-per-value key of a sweep's figures (None, None: the group labels)."""
    swept = [k for k in study_keys if k in keys]
    if not swept:
        numeric_keys = [k for k in keys if all(numeric(g.values.get(k)) is not None for g in groups)]
        swept = keys if len(keys) == 1 else numeric_keys if len(numeric_keys) == len(keys) <= 2 else []
    if not swept or len(keys) > len(swept):  # other keys vary too (variants): one point per group
        return None, None
    return swept[0], (swept[1] if len(swept) > 1 else None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lit_opt report", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("paths", nargs="+", metavar="RUN_FOLDER", help="run folders, study folders, or folders of runs")
    p.add_argument("--out", help="the report folder (default: PATH/report for one folder, else ./report)")
    p.add_argument("--target", type=float, help="target validation accuracy (default: 95%% of the best group's)")
    p.add_argument("--title", default="", help="the report's title")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = args.out or (Path(args.paths[0]) / "report" if len(args.paths) == 1 and
                       not (Path(args.paths[0]) / "config.yaml").exists() else Path("report"))
    try:
        path = write_report(args.paths, Path(out), args.target, args.title)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0
