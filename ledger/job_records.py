"""The jobs in the books: created by the launcher, updated as they run, read by the planner."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from ledger.errors import NotFoundError
from ledger.models import Job
from ledger.store import LedgerCore


def _no_job(job_id: str) -> NotFoundError:
    return NotFoundError(f"no job {job_id!r} in the ledger", "see `gpuhire status`")


class JobRecords(LedgerCore):
    """The job methods of `ledger.book.Ledger`."""

    def create_job(self, job: Job) -> Job:
        with self.writing() as db:
            db.add(job)
        return job

    def get_job(self, job_id: str) -> Job:
        with self.reading() as db:
            job = db.get(Job, job_id)
        if job is None:
            raise _no_job(job_id)
        return job

    def update_job(self, job_id: str, **changes: Any) -> Job:
        """Set fields of a job (status, metrics, ...); unknown field names are an error."""
        with self.writing() as db:
            job = db.get(Job, job_id)
            if job is None:
                raise _no_job(job_id)
            for key, value in changes.items():
                if not hasattr(job, key):
                    raise AttributeError(key)
                setattr(job, key, value)
            db.add(job)
        return job

    def jobs(self, kind: str | None = None) -> list[Job]:
        with self.reading() as db:
            stmt = select(Job).order_by(col(Job.created_at))
            if kind:
                stmt = stmt.where(Job.kind == kind)
            return list(db.exec(stmt))

    def measured_lines_per_s(self, kind: str, gpu_model: str, *, model_size: str | None = None,
                             device: str | None = None, host: str | None = None) -> float | None:
        """Median throughput of finished jobs of this kind on this GPU, or None.

        With `model_size` (train): only jobs of that size, on that `device` when given, and on
        `host` when given (a CPU's speed is its machine's): never pooled across them."""
        values = self.throughputs(kind, gpu_model, model_size=model_size, device=device, host=host)
        return values[len(values) // 2] if values else None

    def throughputs(self, kind: str, gpu_model: str, *, model_size: str | None = None,
                    device: str | None = None, host: str | None = None) -> list[float]:
        """The measured lines/s of jobs of this kind on this GPU (and size, device, host), sorted."""
        with self.reading() as db:
            stmt = (
                select(Job)
                .where(Job.kind == kind, Job.gpu_model == gpu_model.lower())
                .where(col(Job.lines_per_s).is_not(None))
            )
            if model_size is not None:
                stmt = stmt.where(Job.model_size == model_size)
            if device is not None:
                stmt = stmt.where(Job.device == device)
            rows = list(db.exec(stmt))
        return sorted(j.lines_per_s for j in rows
                      if j.lines_per_s and (host is None or j.spec.get("host") == host))
