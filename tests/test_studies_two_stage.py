"""`compare --tune first_seed` (DeepOBS's two-stage protocol) end to end on the tiny MNIST-format
dataset of tests/test_studies.py: stage 1 runs each learning rate with the first seed, stage 2
the other seeds at the rate with the best seed-0 validation accuracy. The choice is recomputed
here from the stage-1 runs' own epochs.csv, independently of the study's code."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from lit_opt.cli import main
from lit_opt.studies import spec as specs
from lit_opt.studies.tuning import choose_index
from tests.test_studies import digits, read_csv, tiny  # noqa: F401  (digits: the module's fixture)

# sgd's 1e20 diverges at its first step: a diverged rate must lose
OPTIMIZERS = ["--optimizers", "sgd:0.05,1e20", "adam:0.001,0.03"]
GRIDS = {"sgd": [0.05, 1e20], "adam": [0.001, 0.03]}


def compare(out: Path, digits: Path, *more: str) -> list[str]:
    return ["compare", *OPTIMIZERS, "--seeds", "2", "--tune", "first_seed", "--out", str(out), *more,
            *tiny(digits), "--trainer.max_epochs", "2"]


def trial(optimizer: str, lr: float, seed: int) -> str:
    return f"{optimizer}_lr={specs.label_value(lr)}_seed{seed}"


def expected_choice(out: Path, optimizer: str) -> float:
    """The rate with the highest best val/acc of seed 0, read from epochs.csv; a diverged run
    (diverged.json) loses; a tie goes to the smaller rate."""
    best_lr, best = None, None
    for lr in sorted(GRIDS[optimizer]):
        run = out / trial(optimizer, lr, 0)
        if (run / "diverged.json").exists():
            assert not (run / "summary.json").exists()
            continue
        acc = max(float(row["val/acc"]) for row in read_csv(run / "epochs.csv") if row["val/acc"])
        assert json.loads((run / "summary.json").read_text())["best_val_acc"] == pytest.approx(acc)
        if best is None or acc > best:
            best_lr, best = lr, acc
    return best_lr


def run_folders(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if (p / "config.yaml").is_file()}


def test_choose_index_diverged_loses_tie_goes_to_the_first():
    assert choose_index([0.5, 0.7, 0.7]) == 1
    assert choose_index([None, 0.1]) == 1
    assert choose_index([None, None]) is None


def test_tune_is_refused_for_a_sweep_and_checked(tmp_path):
    with pytest.raises(Exception, match="compare"):
        specs.sweep_study({"sweep": {"model.lr": "0.1,1"}, "tune": "first_seed"}, out=tmp_path)
    with pytest.raises(Exception, match="first_seed"):
        specs.compare_study({"optimizers": {"sgd": {"lr": [0.1, 1]}}, "tune": "best"}, out=tmp_path)
    # the default is today's protocol: every rate with every seed, the same trial names
    study = specs.compare_study({"optimizers": {"sgd": {"lr": [0.1, 1]}}, "seeds": 2}, out=tmp_path)
    assert study.tune == "all_seeds" and len(study.trials) == 4
    tuned = specs.compare_study({"optimizers": {"sgd": {"lr": [0.1, 1]}, "adam": {"lr": 0.001}}, "seeds": 3,
                                 "tune": "first_seed"}, out=tmp_path)
    # adam has a single rate, nothing to choose: all its seeds are in stage 1
    assert [t.name for t in tuned.trials] == ["sgd_lr=0.1_seed0", "sgd_lr=1_seed0", "adam_lr=0.001_seed0",
                                              "adam_lr=0.001_seed1", "adam_lr=0.001_seed2"]
    assert [t.name for t in tuned.candidates] == ["sgd_lr=0.1_seed1", "sgd_lr=0.1_seed2", "sgd_lr=1_seed1",
                                                  "sgd_lr=1_seed2"]


def test_print_commands_before_any_run_prints_stage_1_and_says_how_to_get_stage_2(digits, tmp_path, capsys):
    out = tmp_path / "printed"
    assert main([*compare(out, digits), "--print-commands"]) == 0
    printed = capsys.readouterr()
    lines = printed.out.strip().splitlines()
    names = [shlex.split(line)[shlex.split(line).index("--run.name") + 1] for line in lines]
    assert names == [trial(o, lr, 0) for o, lrs in GRIDS.items() for lr in lrs]
    assert "stage 2" in printed.err and "depends on stage 1" in printed.err
    assert "run this command again with --print-commands" in printed.err
    assert not run_folders(out)  # nothing ran
    study = json.loads((out / "study.json").read_text())
    assert study["tune"] == "first_seed" and study["tune_seed"] == 0 and study["chosen"] == {}
    assert len(study["trials"]) == 4


@pytest.fixture(scope="module")
def two_stage(digits, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("two_stage") / "cmp"
    assert main(compare(out, digits)) == 0
    return out


def test_first_seed_runs_the_grid_with_seed_0_then_seed_1_at_the_chosen_rate(two_stage):
    out = two_stage
    chosen = {o: expected_choice(out, o) for o in GRIDS}
    assert chosen["sgd"] == 0.05  # 1e20 diverged
    assert (out / trial("sgd", 1e20, 0) / "diverged.json").exists()
    # 2 optimizers x 2 rates with seed 0, then 2 optimizers x 1 rate with seed 1: 6 trials
    expected = {trial(o, lr, 0) for o, lrs in GRIDS.items() for lr in lrs} | {trial(o, chosen[o], 1)
                                                                               for o in GRIDS}
    assert run_folders(out) == expected and len(expected) == 6
    for o in GRIDS:
        config = (out / trial(o, chosen[o], 1) / "config.yaml").read_text()
        assert "seed_everything: 1" in config
    study = json.loads((out / "study.json").read_text())
    assert study["tune"] == "first_seed" and study["seeds"] == [0, 1] and study["tune_seed"] == 0
    assert {f: c["lr"] for f, c in study["chosen"].items()} == chosen
    assert {t["name"]: t["stage"] for t in study["trials"]} == {
        name: 1 if name.endswith("seed0") else 2 for name in expected}
    # the report: which rate, on which seed, the other seeds only at it, the sensitivity
    md = (out / "report" / "report.md").read_text()
    assert "## Learning-rate choice (tune: first_seed)" in md
    assert "with seed 0 only" in md and "the other seeds (1) ran only at that rate" in md
    assert "### Learning-rate sensitivity (seed 0)" in md
    for o in GRIDS:
        row = next(line for line in md.splitlines() if line.startswith(f"| {o} | {specs.label_value(chosen[o])} |"))
        assert row.endswith("| 0, 1 |")
    assert (out / "report" / "lr_sensitivity.png").stat().st_size > 0
    groups = {g["group"]: g for g in read_csv(out / "report" / "groups.csv")}
    for o, lrs in GRIDS.items():
        for lr in lrs:
            g = groups[f"optimizer={o}, lr={specs.label_value(lr)}"]
            assert g["selected"] == str(lr == chosen[o])
            assert g["seeds"] == ("0 1" if lr == chosen[o] else "0")


def test_a_rerun_skips_every_trial_and_prints_stage_2(two_stage, digits, capsys):  # noqa: F811
    out = two_stage
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "report" not in p.parts}
    capsys.readouterr()
    assert main(compare(out, digits)) == 0
    log = capsys.readouterr().out
    assert log.count("before, skipped") == 6
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "report" not in p.parts}
    assert {p: t for p, t in after.items() if p.name != "study.json"} == \
        {p: t for p, t in before.items() if p.name != "study.json"}
    # stage 1 finished: --print-commands now prints stage 2's lines, the seed-1 ones
    assert main([*compare(out, digits), "--print-commands"]) == 0
    printed = capsys.readouterr()
    names = [shlex.split(line)[shlex.split(line).index("--run.name") + 1]
             for line in printed.out.strip().splitlines()]
    assert names == [trial(o, expected_choice(out, o), 1) for o in GRIDS]
    assert "stage 2: 2 lines" in printed.err


def test_jobs_2_runs_the_stages_one_after_the_other(two_stage, digits, tmp_path):  # noqa: F811
    out = tmp_path / "par"
    argv = ["compare", "--optimizers", "adam:0.001,0.03", "--seeds", "2", "--tune", "first_seed", "--out",
            str(out), "--jobs", "2", *tiny(digits), "--trainer.max_epochs", "2"]
    assert main(argv) == 0
    chosen = expected_choice(out, "adam")
    assert run_folders(out) == {trial("adam", 0.001, 0), trial("adam", 0.03, 0), trial("adam", chosen, 1)}
    # the same runs as the sequential study's
    for name in run_folders(out):
        mine = json.loads((out / name / "summary.json").read_text())
        theirs = json.loads((two_stage / name / "summary.json").read_text())
        assert mine["best_val_acc"] == theirs["best_val_acc"] and mine["test/acc"] == theirs["test/acc"]


def test_select_learning_rates_on_the_tuning_seed_alone():
    from lit_opt.studies.results import Group, Run
    from lit_opt.studies.tuning import select_learning_rates

    def run(seed, acc, state="finished"):
        return Run(Path(f"r{seed}"), state, config={"seed_everything": seed},
                   summary={"best_val_acc": acc} if state == "finished" else {})

    def group(opt, lr, *runs):
        return Group({"model.optimizer": opt, "model.lr": lr}, list(runs))

    # sgd: seed 0 prefers 0.1 although the mean over seeds of 0.01 (with seeds 1, 2) is higher
    sgd = [group("sgd", 0.01, run(0, 0.80), run(1, 0.99), run(2, 0.99)), group("sgd", 0.1, run(0, 0.90))]
    adam = [group("adam", 0.001, run(0, 0.7)), group("adam", 0.01, run(0, 0.7))]  # a tie: the smaller rate
    lion = [group("lion", 1e-4, run(0, None, "diverged")), group("lion", 1e-3, run(0, None, "diverged"))]
    single = [group("sam", 0.01, run(0, None, "diverged"), run(1, 0.5))]  # one rate: nothing to choose
    groups = sgd + adam + lion + single
    select_learning_rates(groups, tune_seed=0)
    assert [g.selected for g in groups] == [False, True, True, False, False, False, True]
    select_learning_rates(groups)  # all_seeds: the mean over the seeds
    assert [g.selected for g in sgd] == [True, False]
