"""Property: every file a user can hand gpuhire, filled with random bytes or random (valid)
TOML/JSON/XML/CSV, ends in success or in one line "error: ...; FIX" with a non-zero exit,
never the "unexpected ... please report it" line nor a traceback. Bytes that are not UTF-8
(they hold a 0xff) can never be valid: those must fail. In-process runner, real files, a real
SQLite ledger; 25 examples a kind, so the file runs in well under a minute."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Cli

FUZZ = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def check(result: Any, must_fail: bool) -> None:
    """Success, or one error line; never the catch-all, never a traceback."""
    out = (result.stdout or "") + (result.stderr or "")
    assert "unexpected" not in result.stderr and "Traceback" not in out, result.stderr
    if must_fail:
        assert result.exit_code != 0, out
    if result.exit_code != 0:
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


# -- strategies ---------------------------------------------------------------------------------
raw_bytes = st.binary(max_size=1500)
not_utf8 = st.tuples(st.binary(max_size=600), st.binary(max_size=600)).map(lambda t: t[0] + b"\xff" + t[1])
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
xml_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
scalars = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | text
           | st.sampled_from([0, 1, -1, 2, 10**6, "", "0", "1", "abc", 0.5]))


def values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(keys, inner, max_size=4), max_leaves=12)


def keys_from(known: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(known) | text


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_str(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_doc(doc: dict[str, Any]) -> bytes:
    return "".join(f"{_toml_str(k)} = {toml_value(v)}\n" for k, v in doc.items()).encode()


def _config_keys() -> list[str]:
    """Every key name of the config's models, at any depth."""
    from pydantic import BaseModel

    from launcher.config import _Fields

    names: set[str] = set()
    todo: list[Any] = [_Fields]
    while todo:
        model = todo.pop()
        for name, field in model.model_fields.items():
            names.add(name)
            stack = [field.annotation]
            while stack:
                ann = stack.pop()
                if isinstance(ann, type) and issubclass(ann, BaseModel) and ann is not model:
                    todo.append(ann)
                stack.extend(getattr(ann, "__args__", ()))
    return sorted(names | {"t4", "l4", "cpu", "a100", "rtx3060", "mine", "sns", "type"})


def _preset_keys() -> list[str]:
    from jobs.htr.config import TrainConfig

    return [f.name for f in fields(TrainConfig)]


CONFIG_KEYS = _config_keys()
config_docs = st.dictionaries(keys_from(CONFIG_KEYS), values(keys_from(CONFIG_KEYS)), min_size=1, max_size=5)
preset_docs = st.dictionaries(keys_from(_preset_keys()), values(text), min_size=1, max_size=6)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # a dry run or a plan writes nothing outside tmp_path
    return tmp_path


# -- --preset FILE.toml -------------------------------------------------------------------------
def _preset(cli: Cli, where: Path, data: bytes, must_fail: bool) -> None:
    (where / "gt").mkdir(exist_ok=True)
    preset = _write(where / "mine.toml", data)
    check(cli("train", str(where / "gt"), "--dry-run", "--provider", "local", "--preset", str(preset)),
          must_fail)


@FUZZ
@given(data=raw_bytes | not_utf8)
def test_preset_bytes(cli: Cli, where: Path, data: bytes) -> None:
    _preset(cli, where, data, b"\xff" in data)


@FUZZ
@given(doc=preset_docs)
def test_preset_toml(cli: Cli, where: Path, doc: dict[str, Any]) -> None:
    _preset(cli, where, toml_doc(doc), False)


# -- --config FILE --------------------------------------------------------------------------------
def _config(sqlite_db: str, where: Path, data: bytes, must_fail: bool) -> None:
    config = _write(where / "config.toml", data)
    check(Cli(sqlite_db, config)("cards"), must_fail)


@FUZZ
@given(data=raw_bytes | not_utf8)
def test_config_bytes(sqlite_db: str, where: Path, data: bytes) -> None:
    _config(sqlite_db, where, data, b"\xff" in data)


@FUZZ
@given(doc=config_docs)
def test_config_toml(sqlite_db: str, where: Path, doc: dict[str, Any]) -> None:
    _config(sqlite_db, where, toml_doc(doc), False)


# -- ledger import FILE.csv --------------------------------------------------------------------
COLUMNS = ["provider", "gpu", "start", "end", "usd_per_hour", "count", "instance_type", "market",
           "zone", "region", "volume_gb", "end_reason", "note", "public_ipv4",
           "on_demand_usd_per_hour"]
cells = text | st.sampled_from(["", "1", "0", "-1", "1e400", "nan", "2026-10-01T08:00Z",
                                "2026-10-01T09:00Z", "spot", "on-demand", "runpod", "a100"])


@st.composite
def csv_files(draw: Callable[..., Any]) -> bytes:
    header = draw(st.lists(st.sampled_from(COLUMNS) | text, min_size=1, max_size=8))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(header) + 1), max_size=4))
    return "\n".join(",".join(json.dumps(c) for c in line) for line in [header, *rows]).encode()


@FUZZ
@given(data=raw_bytes | not_utf8 | csv_files())
def test_ledger_import(cli: Cli, where: Path, data: bytes) -> None:
    check(cli("ledger", "import", str(_write(where / "rent.csv", data))), b"\xff" in data)


# -- runs/<job>/state.json, through gpuhire logs ------------------------------------------------
state_keys = keys_from(["job", "provider", "gpu", "data", "preset", "epochs", "max_restarts",
                        "max_usd", "market", "attempt", "status", "session_id", "machine",
                        "workdir", "event_offset", "log_offset"])
state_docs = st.dictionaries(state_keys, values(state_keys), max_size=8).map(
    lambda d: json.dumps({"job": "train-1", **d} if "job" not in d else d).encode())


@FUZZ
@given(data=raw_bytes | not_utf8 | state_docs)
def test_state_file(cli: Cli, where: Path, data: bytes) -> None:
    _write(where / "runs" / "train-1" / "state.json", data)
    check(cli("logs", "train-1", "--runs", str(where / "runs")), b"\xff" in data)


# -- gpuhire init --outputs-file F ---------------------------------------------------------------
OUTPUTS = ["region", "bucket", "instance_profile", "sns_topic_arn", "ecr_repository_url",
           "operator_cidrs", "value", "sensitive", "type"]
output_docs = st.dictionaries(keys_from(OUTPUTS), values(keys_from(OUTPUTS)), max_size=7).map(
    lambda d: json.dumps(d).encode())


@FUZZ
@given(data=raw_bytes | not_utf8 | output_docs)
def test_init_outputs_file(sqlite_db: str, where: Path, data: bytes) -> None:
    config = where / "config.toml"
    config.unlink(missing_ok=True)
    outputs = _write(where / "outputs.json", data)
    check(Cli(sqlite_db, config)("init", "--outputs-file", str(outputs)), b"\xff" in data)


# -- PAGE XML and ALTO, through gpuhire train DIR --dry-run ------------------------------------
PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
attr = xml_text | st.sampled_from(["p.png", "10", "0", "-5", "1e9", "nan", "0,0 10,0 10,10 0,10",
                                   "5,5 190,5 190,35 5,35", "1 2 3", ""])


@st.composite
def page_xml(draw: Callable[..., Any]) -> bytes:
    lines = []
    for k in range(draw(st.integers(0, 3))):
        equiv = "".join(f"<TextEquiv><Unicode>{escape(draw(xml_text))}</Unicode></TextEquiv>"
                        for _ in range(draw(st.integers(0, 2))))
        lines.append(f'<TextLine id="l{k}"><Coords points={quoteattr(draw(attr))}/>'
                     f"<Baseline points={quoteattr(draw(attr))}/>{equiv}</TextLine>")
    return (f'<?xml version="1.0" encoding="UTF-8"?><PcGts xmlns="{PAGE_NS}"><Page '
            f"imageFilename={quoteattr(draw(attr))} imageWidth={quoteattr(draw(attr))} "
            f'imageHeight={quoteattr(draw(attr))}><TextRegion id="r"><Coords points="0,0 1,1 2,2"/>'
            + "".join(lines) + "</TextRegion></Page></PcGts>").encode()


@st.composite
def alto_xml(draw: Callable[..., Any]) -> bytes:
    lines = []
    for k in range(draw(st.integers(0, 3))):
        geometry = " ".join(f"{a}={quoteattr(draw(attr))}" for a in ("HPOS", "VPOS", "WIDTH", "HEIGHT"))
        strings = "".join(f"<String CONTENT={quoteattr(draw(xml_text))}/>"
                          for _ in range(draw(st.integers(0, 2))))
        lines.append(f'<TextLine ID="l{k}" {geometry}>{strings}</TextLine>')
    return (f'<?xml version="1.0" encoding="UTF-8"?><alto xmlns="{ALTO_NS}"><Description>'
            f"<MeasurementUnit>{escape(draw(st.sampled_from(['pixel', 'mm10', 'inch1200', 'x'])))}"
            f"</MeasurementUnit><sourceImageInformation><fileName>{escape(draw(attr))}</fileName>"
            f'</sourceImageInformation></Description><Layout><Page WIDTH={quoteattr(draw(attr))} '
            f'HEIGHT={quoteattr(draw(attr))}><PrintSpace><TextBlock ID="b">' + "".join(lines)
            + "</TextBlock></PrintSpace></Page></Layout></alto>").encode()


def _ground_truth(cli: Cli, where: Path, data: bytes) -> None:
    from PIL import Image

    gt = where / "gt"
    gt.mkdir(exist_ok=True)
    if not (gt / "p.png").exists():
        Image.new("L", (200, 40), 255).save(gt / "p.png")
    _write(gt / "p.xml", data)
    check(cli("train", str(gt), "--dry-run", "--provider", "local", "--preset", "tiny"), False)


@FUZZ
@given(data=raw_bytes | not_utf8 | page_xml())
def test_page_xml(cli: Cli, where: Path, data: bytes) -> None:
    _ground_truth(cli, where, data)


@FUZZ
@given(data=raw_bytes | not_utf8 | alto_xml())
def test_alto_xml(cli: Cli, where: Path, data: bytes) -> None:
    _ground_truth(cli, where, data)


# -- gpuhire infer --model F --plan-only -----------------------------------------------------
model_blobs = st.dictionaries(
    keys_from(["format", "version", "state_dict", "codec", "config", "height", "metrics"]),
    values(keys_from(_preset_keys())), max_size=7,
).map(lambda d: {"format": "gpuhire-htr-model", **d})


@FUZZ
@given(data=raw_bytes | not_utf8 | model_blobs)
def test_infer_model(cli: Cli, where: Path, data: bytes | dict[str, Any]) -> None:
    from PIL import Image

    scans = where / "scans"
    if not scans.exists():
        scans.mkdir()
        Image.new("L", (200, 40), 255).save(scans / "line.png")
    model = where / "model.pt"
    if isinstance(data, dict):
        import torch

        torch.save(data, model)
    else:
        _write(model, data)
    check(cli("infer", str(scans), "--model", str(model), "--out", str(where / "out"),
              "--plan-only", "--no-calibrate"), True)
    assert not (where / "out").exists() or not os.listdir(where / "out")  # a plan writes nothing
