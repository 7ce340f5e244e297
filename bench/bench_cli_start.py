"""Benchmark: cold start of `gpuhire --help` against `python -c "import typer"`, side by side.

    python bench/bench_cli_start.py [--runs 15]

Alternates the two commands so that both see the same machine state; reports medians and the
ratio, and checks that --help imported neither boto3, torch nor matplotlib.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HELP = [sys.executable, "-m", "launcher", "--help"]
TYPER = [sys.executable, "-c", "import typer"]
PROBE = (
    "import sys, runpy\nsys.argv=['gpuhire','--help']\n"
    "try:\n    runpy.run_module('launcher', run_name='__main__')\nexcept SystemExit:\n    pass\n"
    "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3','torch','matplotlib'}),"
    " file=sys.stderr)"
)


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    timed(HELP), timed(TYPER)  # warm the file cache
    helps, typers = [], []
    for _ in range(args.runs):
        helps.append(timed(HELP))
        typers.append(timed(TYPER))
    h, t = statistics.median(helps), statistics.median(typers)
    heavy = subprocess.run([sys.executable, "-c", PROBE], check=False, capture_output=True,
                           text=True).stderr
    print(f"gpuhire --help       median {h * 1000:7.1f} ms over {args.runs} runs")
    print(f"python -c 'import typer' median {t * 1000:7.1f} ms")
    print(f"ratio                {h / t:7.2f} x")
    print(f"heavy modules imported by --help: {heavy.strip()}")


if __name__ == "__main__":
    main()
