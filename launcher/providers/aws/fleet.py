"""Inference fleet workers on AWS: one spot instance per worker (`gpuhire infer`, launcher/infer/).

Each instance is launched through launcher.providers.aws.cloud (cheapest offer, locked down,
dead-man switch, spot watcher). The worker runs in the trainer image; the box keeps its own
heartbeat while the worker runs and shuts down when the worker exits (the queue drained), so a
fleet never outlives its work, even if the launcher dies.
"""

from __future__ import annotations

import shlex
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from launcher.providers.aws.cloud import AwsCloud
from launcher.providers.aws.image import pull_script
from launcher.providers.aws.launch import LaunchPlan
from launcher.providers.aws.types import END_USER, Offer
from launcher.providers.base import WorkerSpec

# RunInstances and the wait for `running` of this many instances at once (EC2's API rate
# limits are per account: a few dozen calls in flight are fine, a few hundred are throttled).
MAX_PARALLEL_LAUNCHES = 16


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
        """Launch `count` more workers at once: one offer read, key pair and security group for
        all, then RunInstances and the wait for `running` in one thread per instance, so N
        boxes take about one boot, not N. Capacity for only some of them goes on with those
        (a note says so); no capacity at all, or any other failure, raises once every launch
        has ended, and then no instance of this call is left running."""
        from launcher.errors import ConfigError
        from launcher.providers.aws.types import LaunchRequest

        if count <= 0:
            return
        if not self.aws.aws.instance_profile:
            raise ConfigError("the fleet's workers need [aws] instance_profile to read the queue "
                              "and the bucket", "run `gpuhire init --from-terraform DIR` (docs/infer.md)")
        user_data = worker_user_data(self.spec, self.image, self.aws.aws.region)
        request = LaunchRequest(self.spec.job, self.gpu, tuple(self.aws.offers(self.gpu)), job_kind="infer",
                                extra_user_data=user_data)
        offers, plan = self.aws.prepare_launch(request)
        launched, errors = self._launch_all(count, offers, plan)
        self.started += len(launched)
        self.live.update(launched)
        self._settle(count, launched, errors)

    def _launch_all(self, count: int, offers: list[Offer], plan: LaunchPlan
                    ) -> tuple[list[str], list[BaseException]]:
        """One launch per thread; a failure that is not about capacity calls the others off."""
        from launcher.errors import CapacityError

        cancelled = threading.Event()
        launched: list[str] = []
        errors: list[BaseException] = []
        pool = ThreadPoolExecutor(min(count, MAX_PARALLEL_LAUNCHES), thread_name_prefix="gpuhire-launch")
        futures = [pool.submit(self._one, offers, plan, cancelled) for _ in range(count)]
        try:
            for future in as_completed(futures):
                try:
                    launched.append(future.result())
                except Exception as exc:
                    errors.append(exc)
                    if not isinstance(exc, CapacityError):
                        cancelled.set()
        except BaseException:  # Ctrl-C while waiting: no launch may go on behind our back
            cancelled.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self.live.update(f.result() for f in futures if f.done() and not f.cancelled()
                             and f.exception() is None)
            raise
        pool.shutdown(wait=True)
        return launched, errors

    def _one(self, offers: list[Offer], plan: LaunchPlan, cancelled: threading.Event) -> str:
        from launcher.errors import ProviderError

        if cancelled.is_set():  # a launch that has not begun when another failed never begins
            raise ProviderError("launch called off", "another launch of the same fleet failed")
        return self.aws.launch_prepared(self.spec.job, offers, plan, cancelled).instance.instance_id

    def _settle(self, count: int, launched: list[str], errors: list[BaseException]) -> None:
        """Raise what the launches could not do; note capacity found for only some of them."""
        from launcher.errors import CapacityError

        hard = [e for e in errors if not isinstance(e, CapacityError)]
        if hard:
            if launched:  # the fleet cannot start as asked: none of this call's boxes stays
                self.aws.terminate(launched)
                self.aws.close_sessions(job_id=self.spec.job, default_reason=END_USER)
                self.live.difference_update(launched)
            raise ([e for e in hard if "called off" not in str(e)] or hard)[0]
        if errors and not self.live:  # not even one worker: the job cannot start
            raise errors[0]
        if errors:
            why = getattr(errors[0], "message", errors[0])
            self.notes.append(f"{len(launched)} of {count} more instance(s) launched; no capacity for the "
                              f"rest ({why}): going on with {len(self.live)}")

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
