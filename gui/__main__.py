"""`python -m gui` (or `lit-opt-gui`): the desktop app.

    python -m gui                                   # the window; runs go to ./checkpoints
    python -m gui --config configs/seed003_best_mlp.yaml --runs checkpoints
    python -m gui --screenshot docs/images          # train a short MNIST run, save PNGs mid-run
    python -m gui --screenshot docs/images --compare RUNS   # ... and app-compare.png of RUNS' runs

Only PySide6 and pyqtgraph load before the window shows; torch and Lightning follow in
a background thread. Before any of it, `gui.startup_check` makes sure Qt can open a window
here (system libraries, display) and says what to install instead of letting Qt abort.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gui", description="lit_opt's desktop app.")
    p.add_argument("--config", help="a YAML config to fill the form with (the CLI's format)")
    p.add_argument("--runs", default=None, help="folder of run folders (default: the config's run.root, "
                                                "else ./checkpoints)")
    p.add_argument("--screenshot", metavar="DIR", default=None,
                   help="train a short run and save the window's views mid-run as PNGs in DIR, then exit")
    p.add_argument("--data", default=None, help="dataset folder for --screenshot (default: $LIT_OPT_DATA)")
    p.add_argument("--compare", metavar="RUNS", default=None,
                   help="with --screenshot: also save app-compare.png, every run in this folder (a study's "
                        "output folder, say) ticked and compared")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from gui.startup_check import startup_problem

    # Qt aborts the process (exit 134) when xcb libraries or the display are missing: say so first.
    problem = startup_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from PySide6.QtWidgets import QApplication

    import gui  # noqa: F401  (the PySide6 6.12.0 guard, before any signal)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("lit_opt")
    if args.screenshot:
        from gui.screenshots import take_screenshots

        return take_screenshots(Path(args.screenshot), data_dir=args.data, runs_root=args.runs,
                                compare=args.compare)

    config = None
    if args.config:
        import yaml

        try:
            config = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            print(f"error: cannot read {args.config}: {exc}", file=sys.stderr)
            return 2
    from gui.main_window import MainWindow

    window = MainWindow(runs_root=args.runs, config=config)
    window.show()
    code = app.exec()
    window.dispose()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
