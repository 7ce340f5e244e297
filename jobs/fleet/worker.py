"""The fleet worker: `python -m jobs.fleet.worker`, one per instance (see launcher/infer/queue.py).

It takes a batch from the work queue, keeps the batch's lease alive with a heartbeat thread,
fetches the pages it has no results for yet, recognises them (jobs.htr), uploads each page's
results, reports the batch on the done queue and deletes it from the work queue. A batch with
failed pages is left to come back after `--retry-delay` (the queue's redrive policy sends it
to the dead-letter queue after its last try). SIGTERM (the spot watcher's two-minute notice)
gives the current batch back at once and exits. With no batch for `--idle-exit` seconds the
worker exits 0, and on an instance the box then shuts down.

Runs in the trainer image: it needs only the standard library, boto3 and jobs/, no other
part of gpuhire. Credentials come from the standard AWS chain (the instance profile).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobs.fleet import FLEET_TAGGING
from jobs.htr.pages import Page, recognise_pages

EXAMPLE = ("python -m jobs.fleet.worker --bucket my-gpuhire --job infer-20261130-0915-1a2b "
           "--work-url URL --done-url URL")


class StopRequestedError(BaseException):
    """SIGTERM arrived: give the batch back and exit.

    A BaseException, like KeyboardInterrupt, so that nothing on the way swallows it: botocore
    wraps any Exception raised inside a request (a long poll is one) in a retryable
    HTTPClientError and tries again, which kept a signalled idle worker polling for minutes."""


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the first notice is the one handled
    raise StopRequestedError()


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return str(code) in ("404", "NoSuchKey", "NotFound")


class Worker:
    def __init__(self, s3: Any, sqs: Any, args: argparse.Namespace) -> None:
        self.s3 = s3
        self.sqs = sqs
        self.args = args
        self.prefix = f"jobs/{args.job}/"
        self.name = args.name or f"{os.uname().nodename}:{os.getpid()}"
        self.models: dict[str, Path] = {}

    # -- S3 ---------------------------------------------------------------------------------
    def _has_result(self, page: Page) -> bool:
        try:
            self.s3.head_object(Bucket=self.args.bucket, Key=f"{self.prefix}results/{page.outputs[-1]}")
        except Exception as exc:
            if _missing(exc):
                return False
            raise
        return True

    def _model(self, key: str, work: Path, name: str | None = None) -> Path:
        """The file at `key`, downloaded once, under its own name (the recognition model's
        `model.pt`, `model.mlmodel` or `model.safetensors`: kraken's models are read by kind)."""
        if key not in self.models:
            path = work / (name or key.rsplit("/", 1)[-1])
            self.s3.download_file(self.args.bucket, key, str(path))
            self.models[key] = path
        return self.models[key]

    def _fetch(self, item: dict[str, Any], into: Path) -> Page:
        for rel in item["files"]:
            target = into / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(self.args.bucket, f"{self.prefix}pages/{rel}", str(target))
        return Page.from_message(item, into)

    def _upload(self, page: Page, out: Path) -> None:
        for rel in page.outputs:  # the text file last: its presence means the page is done
            self.s3.upload_file(str(out / rel), self.args.bucket, f"{self.prefix}results/{rel}",
                                ExtraArgs={"Tagging": FLEET_TAGGING})

    # -- SQS --------------------------------------------------------------------------------
    @contextmanager
    def _lease(self, handle: str) -> Iterator[None]:
        """Extend the batch's visibility every third of it while the batch is worked on."""
        stop = threading.Event()
        every = max(1.0, self.args.visibility / 3)
        started = time.monotonic()

        def beat() -> None:
            while not stop.wait(every):
                if time.monotonic() - started > self.args.batch_timeout:
                    # A batch this slow is hung (a stuck GPU, a deadlock): stop holding it, so it
                    # goes to another worker when its lease runs out, and end this worker (on an
                    # instance the box then powers off).
                    print(f"fleet worker {self.name}: batch over {self.args.batch_timeout} s; giving up",
                          file=sys.stderr, flush=True)
                    os._exit(3)
                try:
                    self.sqs.change_message_visibility(QueueUrl=self.args.work_url, ReceiptHandle=handle,
                                                       VisibilityTimeout=self.args.visibility)
                except Exception as exc:  # the next beat tries again; the lease may lapse
                    print(f"fleet worker {self.name}: heartbeat failed: {exc}", file=sys.stderr)

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    def _give_back(self, handle: str, delay_s: int) -> None:
        self.sqs.change_message_visibility(QueueUrl=self.args.work_url, ReceiptHandle=handle,
                                           VisibilityTimeout=delay_s)

    def _requeue(self, message: dict[str, Any]) -> None:
        """Give a batch back at once without spending one of its tries: an interruption is not
        the batch's fault, so it goes back as a new message (receive count 0) and the old one
        is deleted. If that fails, the old one comes back when its lease runs out."""
        try:
            self.sqs.send_message(QueueUrl=self.args.work_url, MessageBody=message["Body"])
            self.sqs.delete_message(QueueUrl=self.args.work_url, ReceiptHandle=message["ReceiptHandle"])
        except Exception as exc:
            print(f"fleet worker {self.name}: could not requeue the batch: {exc}", file=sys.stderr)

    def _report_failure(self, message: dict[str, Any], reason: str) -> None:
        """Tell the launcher why a whole batch failed (the dead-letter report names it)."""
        try:
            body = json.loads(message["Body"])
            self.sqs.send_message(QueueUrl=self.args.done_url, MessageBody=json.dumps({
                "job": body.get("job"), "batch": body.get("batch"), "worker": self.name, "done": [],
                "failed": [{"key": item["key"], "reason": reason[:500]} for item in body.get("pages", [])],
                "seconds": 0}))
        except Exception as exc:
            print(f"fleet worker {self.name}: could not report the failure: {exc}", file=sys.stderr)

    # -- one batch --------------------------------------------------------------------------
    def batch(self, message: dict[str, Any]) -> bool:
        """Work one batch; True when every page is done (the message is then deleted)."""
        body = json.loads(message["Body"])
        handle = message["ReceiptHandle"]
        started = time.monotonic()
        print(f"fleet worker {self.name} (pid {os.getpid()}): batch {body['batch']} received "
              f"({len(body['pages'])} pages)",
              file=sys.stderr, flush=True)
        with self._lease(handle), tempfile.TemporaryDirectory(prefix="gpuhire-batch-") as tmp:
            work = Path(tmp)
            model = self._model(body["model"], Path(self.args.cache))
            # the job's options travel in each batch: layout format, the user's segmentation model
            seg_key = body.get("segment_model")  # s3 key, ending in the model file's own name
            # cached as segment-<name>: a segmentation model called model.mlmodel must not
            # overwrite the recognition model of that name
            segment_model = self._model(seg_key, Path(self.args.cache),
                                        "segment-" + seg_key.rsplit("/", 1)[-1]) if seg_key else None
            done: list[dict[str, Any]] = []
            todo: list[Page] = []
            segment_s, segmented = 0.0, 0
            for item in body["pages"]:
                page = Page.from_message(item, Path("."))
                if self._has_result(page):  # finished by an earlier delivery of this batch
                    done.append({"key": page.key, "lines": 0})
                else:
                    todo.append(self._fetch(item, work / "in"))
            failed: list[dict[str, str]] = []
            if todo:
                out = work / "out"
                read, outcomes = recognise_pages(model, todo, work, out, int8=self.args.int8,
                                                 device=self.args.device, fmt=body.get("format", "page"),
                                                 segment_model=segment_model)
                segment_s, segmented = read.segment_s, read.segmented
                by_key = {p.key: p for p in todo}
                for o in outcomes:
                    if o.ok:
                        self._upload(by_key[o.key], out)
                        done.append({"key": o.key, "lines": o.lines})
                    else:
                        failed.append({"key": o.key, "reason": o.reason})
        report = {"job": body["job"], "batch": body["batch"], "worker": self.name, "done": done,
                  "failed": failed, "seconds": round(time.monotonic() - started, 3),
                  "segment_s": round(segment_s, 3), "segmented": segmented}
        self.sqs.send_message(QueueUrl=self.args.done_url, MessageBody=json.dumps(report))
        if failed:
            self._give_back(handle, self.args.retry_delay)
            return False
        self.sqs.delete_message(QueueUrl=self.args.work_url, ReceiptHandle=handle)
        return True

    def run(self) -> int:
        idle_since = time.monotonic()
        print(f"fleet worker {self.name} (pid {os.getpid()}): waiting for batches", file=sys.stderr,
              flush=True)
        message: dict[str, Any] | None = None
        try:
            while True:
                message = None
                wait = max(0, min(20, int(self.args.idle_exit - (time.monotonic() - idle_since))))
                got = self.sqs.receive_message(QueueUrl=self.args.work_url, MaxNumberOfMessages=1,
                                               WaitTimeSeconds=wait)
                messages = got.get("Messages", [])
                if not messages:
                    if time.monotonic() - idle_since >= self.args.idle_exit:
                        print(f"fleet worker {self.name}: no batch for {self.args.idle_exit} s, exiting",
                              file=sys.stderr)
                        return 0
                    continue
                message = messages[0]
                ok = self._batch_or_give_back(message)
                message = None
                print(f"fleet worker {self.name}: batch {'done' if ok else 'left for a retry'}",
                      file=sys.stderr, flush=True)
                idle_since = time.monotonic()
        except StopRequestedError:
            if message is None:
                # No batch held. One that SQS handed out just as the poll was cut comes back when
                # its lease runs out, as after any lost worker.
                print(f"fleet worker {self.name}: stopped (SIGTERM) while waiting", file=sys.stderr,
                      flush=True)
            else:
                self._requeue(message)
                print(f"fleet worker {self.name}: stopped (SIGTERM); batch given back", file=sys.stderr,
                      flush=True)
            return 143

    def _batch_or_give_back(self, message: dict[str, Any]) -> bool:
        """Work one batch; a batch that breaks the worker is reported and comes back later."""
        try:
            return self.batch(message)
        except Exception as exc:  # a broken batch must not kill the worker: it comes back later
            print(f"fleet worker {self.name}: batch failed: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            self._report_failure(message, f"{type(exc).__name__}: {exc}")
            try:
                self._give_back(message["ReceiptHandle"], self.args.retry_delay)
            except Exception as again:  # its lease runs out instead: it still comes back
                print(f"fleet worker {self.name}: could not give the batch back: {again}",
                      file=sys.stderr)
            return False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.fleet.worker",
                                description="Recognise batches of pages from gpuhire's SQS queue.",
                                epilog=f"Example:\n  {EXAMPLE}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bucket", required=True)
    p.add_argument("--job", required=True)
    p.add_argument("--work-url", required=True, help="the work queue's URL")
    p.add_argument("--done-url", required=True, help="the done queue's URL")
    p.add_argument("--visibility", type=int, default=300, help="a batch's lease, seconds (the queue's)")
    p.add_argument("--retry-delay", type=int, default=30,
                   help="a batch with failed pages comes back after this many seconds")
    p.add_argument("--idle-exit", type=int, default=120, help="exit after this many seconds without a batch")
    p.add_argument("--batch-timeout", type=int, default=3600,
                   help="a batch still unfinished after this many seconds is hung: exit")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--int8", action="store_true", help="int8 dynamic quantisation (CPU only)")
    p.add_argument("--cache", default="", help="folder for the model (default: a temporary one)")
    p.add_argument("--pid-file", default="", help="write the pid here (the spot watcher signals it)")
    p.add_argument("--name", default="", help="this worker's name in the done reports")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if args.pid_file:
        Path(args.pid_file).write_text(f"{os.getpid()}\n")
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=10, read_timeout=60)
    session = boto3.Session()
    cache = tempfile.mkdtemp(prefix="gpuhire-model-") if not args.cache else args.cache
    args.cache = cache
    try:
        worker = Worker(session.client("s3", config=config), session.client("sqs", config=config), args)
        return worker.run()
    except StopRequestedError:
        return 143
    finally:
        if cache.startswith(tempfile.gettempdir()) and Path(cache).name.startswith("gpuhire-model-"):
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
