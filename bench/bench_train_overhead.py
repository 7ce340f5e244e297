"""Benchmark: the launcher's own overhead in the loopback end-to-end AWS run, by stage.

Runs the first test of tests/providers/test_train_aws_e2e.py (moto as EC2, a real sshd as the
instance, the real trainer, tiny preset, 160 lines, 6 epochs, one spot interruption: two
attempts) and prints, per attempt, the two figures of issue 6 split by stage:

  instance running -> first training step
    ssh connect                     SSH up on the running instance (pinned key; moto: no boot)
    ship data and checkpoints       SFTP of the compiled dataset (+ checkpoints on attempt 2)
    prepare runtime (image pull)    ECR login + docker pull (0 here: process runtime)
    start detached                  the trainer started with setsid/nohup
    start to first step seen        trainer start .. its first progress event read by the
                                    launcher (python + torch import, data, model: mostly the
                                    trainer's own start, plus up to one 0.5 s poll)

  done -> terminate called
    done seen to settle             the done event read .. the settle step begins
    fetch model and logs            SFTP back
    (terminate and close session follows: terminate call + ledger close)

Not overhead but shown for context: launch until running (RunInstances .. EC2 running).

    python bench/bench_train_overhead.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
TO_FIRST_STEP = ("ssh connect", "ship data and checkpoints", "prepare runtime (image pull)",
                 "start detached", "start to first step seen")
TO_TERMINATE = ("done seen to settle", "fetch model and logs")


def _section(title: str, stages: tuple[str, ...], attempts: list[dict[str, float]],
             numbers: list[int]) -> None:
    header = "".join(f"{f'attempt {n}':>12s}" for n in numbers)
    print(f"\n{title}\n  {'stage':34s}{header}")
    for stage in stages:
        cells = "".join(f"{a[stage]:11.2f}s" if stage in a else f"{'-':>12s}" for a in attempts)
        print(f"  {stage:34s}{cells}")
    totals = "".join(f"{sum(a.get(s, 0.0) for s in stages):11.2f}s" for a in attempts)
    print(f"  {'total':34s}{totals}")


def main() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/providers/test_train_aws_e2e.py", "-s", "-q",
         "-p", "no:cacheprovider", "-k", "survives_interruption"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    line = next((x for x in r.stdout.splitlines() if x.startswith("TIMINGS ")), None)
    if r.returncode != 0 or line is None:
        print(r.stdout[-3000:], r.stderr[-2000:])
        raise SystemExit("the end-to-end run failed")
    attempts = json.loads(line.removeprefix("TIMINGS "))["attempts"]
    _section("instance running -> first training step", TO_FIRST_STEP, attempts,
             list(range(1, len(attempts) + 1)))
    finished = [i for i, a in enumerate(attempts) if "done seen to settle" in a]
    done = [attempts[i] for i in finished]
    _section("done -> terminate called", TO_TERMINATE, done, [i + 1 for i in finished])
    print(f"\n  {'done seen to terminate called':34s}{done[0]['done seen to terminate called']:11.2f}s "
          "(measured end to end)")
    print(f"  {'terminate and close session':34s}{done[0]['terminate and close session']:11.2f}s")
    launch = "".join(f"{a['launch until running']:11.2f}s" for a in attempts)
    print(f"\n  {'launch until running (context)':34s}{launch}")


if __name__ == "__main__":
    main()
