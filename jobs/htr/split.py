"""Train/validation splits: seeded and order-independent, or taken from explicit split files.

A seeded split ranks every line by sha256("<seed>:<key>") and puts the first
round(n × val_fraction) lines in validation. It does not depend on the order the files were
read in, and adding new lines moves few old ones: runs stay comparable.

Split files are plain text, one entry per line (blank lines and lines starting with `#` are
ignored). An entry names a line by its key (`page.xml#line_7`, `lines/foo` for a pair, as
written in texts.jsonl), or every line of a file by that file's path: the XML, the `.gt.txt`,
or the page/line image (absolute, relative to the split file, or the bare file name).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from jobs.htr.errors import GroundTruthError
from jobs.htr.gt import LineSample


def read_split_file(path: Path) -> set[str]:
    """The entries of one split file, each as written and resolved against the file's folder."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GroundTruthError(f"cannot read split file {path}: {exc}",
                               "give a UTF-8 text file with one line key or image path per line") from exc
    entries: set[str] = set()
    for raw in lines:
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        entries.add(entry)
        if "#" not in entry:  # looks like a path: also match it resolved
            entries.add(str((Path(path).parent / entry).resolve()))
    return entries


def sample_aliases(sample: LineSample) -> set[str]:
    """Every string a split file may use to name this sample."""
    aliases = {sample.key, sample.key.split("#", 1)[0]}
    for path in (sample.source, sample.image_path):
        aliases |= {path.name, str(path), str(path.resolve())}
    return aliases


class SplitAssigner:
    """Assigns each sample to 'train', 'val' or None (listed in neither explicit file)."""

    def __init__(self, split_files: tuple[Path, Path] | None) -> None:
        self.explicit = split_files is not None
        self.train: set[str] = set()
        self.val: set[str] = set()
        if split_files is not None:
            self.train = read_split_file(split_files[0])
            self.val = read_split_file(split_files[1])

    def assign(self, sample: LineSample) -> str | None:
        """'train', 'val' or None; raises GroundTruthError for a line named in both files."""
        if not self.explicit:
            return None
        aliases = sample_aliases(sample)
        in_train, in_val = bool(aliases & self.train), bool(aliases & self.val)
        if in_train and in_val:
            raise GroundTruthError(f"line {sample.key} is listed in both the training and the validation "
                                   "split file", "remove it from one of them")
        return "train" if in_train else "val" if in_val else None


def seeded_split(keys: Iterable[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train ids, val ids), each ascending; at least one val line when val_fraction > 0 and n > 1."""
    keys = list(keys)
    ranked = sorted(range(len(keys)),
                    key=lambda i: hashlib.sha256(f"{seed}:{keys[i]}".encode()).digest())
    n_val = round(len(keys) * val_fraction)
    if val_fraction > 0 and len(keys) > 1:
        n_val = min(max(n_val, 1), len(keys) - 1)
    val = sorted(ranked[:n_val])
    train = sorted(ranked[n_val:])
    return train, val
