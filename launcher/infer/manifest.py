"""OUT/.gpuhire/manifest.jsonl: which pages an earlier `gpuhire infer` into OUT already did;
OUT/.gpuhire/fleets/<job>.jsonl: what a fleet job was sent (until it ends as it should).

A rerun sends nothing that is done, so a campaign interrupted halfway (Ctrl-C, a dead
launcher) goes on where it stopped. A fleet whose launcher died works on without it: a rerun
first collects from the bucket what such a fleet finished (flow.py), for the pages it was sent
unchanged, with the same model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.timeutil import utcnow

if TYPE_CHECKING:
    from jobs.htr.pages import Page

STATE_DIR = ".gpuhire"  # under OUT: manifest.jsonl, worker logs


class Manifest:
    """OUT/.gpuhire/manifest.jsonl: one line per page done (key, input signature, model, job).

    A page counts as done when its entry has the same input signature (size and mtime of its
    files) and the same model (size and mtime), and its outputs exist.
    """

    def __init__(self, out: Path, model: Path) -> None:
        self.path = out / STATE_DIR / "manifest.jsonl"
        self.out = out
        st = model.stat()
        self.model = f"{model.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        self.entries: dict[str, tuple[str, str]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: that page is simply done again
                self.entries[item["page"]] = (item.get("signature", ""), item.get("model", ""))

    def is_done(self, page: Page) -> bool:
        return (self.entries.get(page.key) == (page.signature(), self.model)
                and all((self.out / rel).exists() for rel in page.outputs))

    def add(self, page: Page, job: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sig = page.signature()
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"page": page.key, "signature": sig, "model": self.model, "job": job,
                                 "at": utcnow().isoformat()}) + "\n")
        self.entries[page.key] = (sig, self.model)


@dataclass(frozen=True)
class FleetRecord:
    """A fleet job that did not end as it should: where its results are, and what it was sent."""

    job: str
    bucket: str
    signatures: dict[str, str]  # page key -> input signature when it was sent


class FleetRecords:
    """OUT/.gpuhire/fleets/<job>.jsonl: a header line (job, bucket, model), then one line per
    page sent (key, signature). Written before the pages go; removed when the job ends."""

    def __init__(self, manifest: Manifest) -> None:
        self.folder = manifest.out / STATE_DIR / "fleets"
        self.model = manifest.model

    def add(self, job: str, bucket: str, pages: list[Page]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"job": job, "bucket": bucket, "model": self.model})]
        lines += [json.dumps({"page": p.key, "signature": p.signature()}) for p in pages]
        tmp = self.folder / f".{job}.part"
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(self.folder / f"{job}.jsonl")

    def remove(self, *jobs: str) -> None:
        for job in jobs:
            (self.folder / f"{job}.jsonl").unlink(missing_ok=True)

    def earlier(self) -> list[FleetRecord]:
        """Fleet jobs into OUT with the same model that did not end as they should, oldest first."""
        found = []
        for path in sorted(self.folder.glob("*.jsonl"), key=lambda f: f.stat().st_mtime_ns):
            lines = path.read_text(encoding="utf-8").splitlines()
            try:
                head = json.loads(lines[0])
                pages = [json.loads(x) for x in lines[1:] if x.strip()]
            except (IndexError, json.JSONDecodeError):
                continue  # cut short by a crash while written: it was never sent
            if head.get("model") == self.model:
                found.append(FleetRecord(head["job"], head["bucket"],
                                         {x["page"]: x["signature"] for x in pages}))
        return found
