"""lit_opt's cost over bare Lightning (benchmarks/epoch.py's b/d) for two checkouts of the
code, measured in alternated rounds in one run: the only fair way to compare on a noisy
machine (never compare figures from separate runs).

    git worktree add /tmp/before <commit>
    LIT_OPT_DATA=../shared/datasets python benchmarks/revisions.py /tmp/before . --rounds 5

Each round runs this checkout's `benchmarks/epoch.py --repeats 1 --only b d --checkout DIR`
for each checkout in a fresh process (its own imports of that checkout's lit_opt), the
checkouts in turn and the order swapped every round; the table gives each one's median b/d.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path


EPOCH = Path(__file__).resolve().parent / "epoch.py"


def one_round(checkout: Path, net: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, str(EPOCH), "--repeats", "1", "--nets", net, "--only", "b", "d",
                          "--checkout", str(checkout)], cwd=checkout, capture_output=True, text=True,
                         check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("ratios:"))
    got = {k: float(v) for k, v in re.findall(r"(b/d) ([0-9.]+)", line)}
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--nets", nargs="+", default=["mlp", "lenet5"])
    args = parser.parse_args()
    for net in args.nets:
        got = {"before": [], "after": []}
        for r in range(args.rounds):
            for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
                got[name].append(one_round(getattr(args, name).resolve(), net))
                print(f"{net} round {r + 1} {name}: {got[name][-1]}", flush=True)
        for name, rows in got.items():
            med = statistics.median(row["b/d"] for row in rows)
            bd = ", ".join(f"{row['b/d']:.2f}" for row in rows)
            print(f"{net:<7} {name:<7} median b/d {med:.2f} (rounds: {bd})")


if __name__ == "__main__":
    main()
