"""Start-up time: `python -m lit_opt --help`, `import lit_opt`, and a subcommand's --help,
against `python -c "import lightning"`, each a fresh process, run alternately.

    python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "import lightning": [sys.executable, "-c", "import lightning"],
    "import lit_opt": [sys.executable, "-c", "import lit_opt"],
    "lit_opt --help": [sys.executable, "-m", "lit_opt", "--help"],
    "lit_opt fit --help": [sys.executable, "-m", "lit_opt", "fit", "--help"],
}


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    wall(COMMANDS["import lightning"])  # warm the file cache once, untimed
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            times[name].append(wall(cmd))
    base = statistics.median(times["import lightning"])
    print(f"{'command':<22} median   min    max   (n={args.repeats})")
    for name, xs in times.items():
        print(f"{name:<22} {statistics.median(xs):5.2f} s {min(xs):5.2f}  {max(xs):5.2f}")
    print("ratios to import lightning: " + ", ".join(
        f"{name} {statistics.median(xs) / base:.2f}" for name, xs in times.items() if name != "import lightning"))


if __name__ == "__main__":
    main()
