"""OUT/.gpuhire/manifest.jsonl: which pages an earlier `gpuhire infer` into OUT already did.

A rerun sends nothing that is done, so a campaign interrupted halfway (Ctrl-C, a dead
launcher) goes on where it stopped.
"""

from __future__ import annotations

import json
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
