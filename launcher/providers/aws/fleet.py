"""Inference fleet workers on AWS: one spot instance per worker (`gpuhire infer`, launcher/infer/).

Each instance is launched through launcher.providers.aws.cloud (cheapest offer, locked down,
dead-man switch, spot watcher). The worker runs in the trainer image; the box keeps its own
heartbeat while the worker runs and shuts down when the worker exits (the queue drained), so a
fleet never outlives its work, even if the launcher dies.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from launcher.providers.aws.cloud import AwsCloud
from launcher.providers.aws.image import pull_script
from launcher.providers.base import WorkerSpec


def worker_user_data(spec: WorkerSpec, image: str, region: str) -> str:
    """The job part of an instance's user-data: pull the trainer image (logging in to ECR as the
    train flow does), run the worker in it, keep the box's heartbeat fresh while it runs, and
    power off when it exits (the queue drained)."""
    from launcher.providers.aws.userdata import HEARTBEAT_PATH, PID_FILE

    pull = pull_script(image) or f"docker pull {shlex.quote(image)}"
    worker = " ".join(shlex.quote(a) for a in ["docker", "run", "--rm", "--gpus", "all",
                                               "-e", f"AWS_DEFAULT_REGION={region}",
                                               "--entrypoint", "python", image,
                                               "-m", "jobs.fleet.worker", *spec.argv()])
    return (
        "# gpuhire fleet worker: heartbeat while it runs, power off when it is done\n"
        f"{pull}\n"
        f"( while sleep 60; do touch {HEARTBEAT_PATH}; done ) &\n"
        "beat=$!\n"
        f"touch {HEARTBEAT_PATH}\n"
        f"{worker} > /var/log/gpuhire-worker.log 2>&1 &\n"
        f"echo $! > {PID_FILE}\n"
        "wait $!\n"
        "kill $beat\n"
        "shutdown -h now\n"
    )


@dataclass
class AwsFleet:
    """One spot instance per worker (see the module docstring)."""

    spec: WorkerSpec
    aws: AwsCloud
    gpu: str
    image: str
    description: str = "spot instances on AWS"
    started: int = 0
    live: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # what the launcher should tell the user

    def start(self, count: int) -> None:
        from launcher.errors import CapacityError, ConfigError
        from launcher.providers.aws.types import LaunchRequest

        if not self.aws.aws.instance_profile:
            raise ConfigError("the fleet's workers need [aws] instance_profile to read the queue "
                              "and the bucket", "run `gpuhire init --from-terraform DIR` (docs/infer.md)")
        user_data = worker_user_data(self.spec, self.image, self.aws.aws.region)
        for n in range(count):
            offers = tuple(self.aws.offers(self.gpu))
            try:
                launched = self.aws.launch(LaunchRequest(self.spec.job, self.gpu, offers, job_kind="infer",
                                                         extra_user_data=user_data))
            except CapacityError as exc:
                if not self.live:  # not even one worker: the job cannot start
                    raise
                self.notes.append(f"{n} of {count} more instance(s) launched; no capacity for the rest "
                                  f"({exc.message}): going on with {len(self.live)}")
                return
            self.live.add(launched.instance.instance_id)
            self.started += 1

    def alive(self) -> int:
        gone = {i.instance_id for i in self.aws.instances(self.spec.job) if i.state.gone}
        if self.live & gone:
            self.aws.close_sessions(job_id=self.spec.job)  # EC2's reason: spot-interruption, ...
        self.live -= gone
        return len(self.live)

    def top_up(self, wanted: int) -> int:
        missing = max(0, wanted - self.alive())
        self.start(missing)
        return missing

    def stop(self, reason: str) -> None:
        self.aws.release(self.spec.job, reason)
        self.live.clear()
