"""Benchmark: the launcher's own overhead in the loopback end-to-end AWS run, by stage.

Runs tests/providers/test_train_aws_e2e.py (moto as EC2, a real sshd as the instance, the real
trainer, one spot interruption, so two attempts) and prints the seconds the launcher spent in
each stage, summed over both attempts:

    rent (launch, boot, ssh)        launch_instances .. SSH connected (moto: no real boot)
    ship data and checkpoints       SFTP of the compiled dataset (+ checkpoints on attempt 2)
    start detached                  the trainer started with setsid/nohup
    start to first step seen        trainer start .. first progress event read by the launcher
    done seen to terminate called   the done event .. release (model and logs fetched between)
    fetch model and logs            SFTP back
    terminate and close session     terminate + ledger close

    python bench/bench_train_overhead.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def main() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/providers/test_train_aws_e2e.py", "-s", "-q",
         "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    line = next((x for x in r.stdout.splitlines() if x.startswith("TIMINGS ")), None)
    if r.returncode != 0 or line is None:
        print(r.stdout[-3000:], r.stderr[-2000:])
        raise SystemExit("the end-to-end run failed")
    timings = json.loads(line.removeprefix("TIMINGS "))
    for stage, seconds in timings.items():
        print(f"{stage:34s} {seconds:7.2f} s")


if __name__ == "__main__":
    main()
