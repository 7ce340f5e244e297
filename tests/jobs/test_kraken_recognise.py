"""Kraken recognition models in jobs.htr.infer: read as kraken reads them, in both of kraken's
formats; a segmentation model, a damaged file and a file of neither kind each one line."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from kraken_env import kraken_reads, tiny_kraken_models
from lxml import etree
from PIL import Image

from jobs.htr.errors import HtrError
from jobs.htr.infer import Recogniser, check_model, open_line_model, recognise
from jobs.htr.kraken_recognise import EXPECTED, model_engine

PAGE_NS = "{http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15}"
FORMATS = ("safetensors", "mlmodel")


@pytest.fixture(scope="session")
def kraken_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_kraken_models(tmp_path_factory.mktemp("kraken-models"))


def test_a_line_image_reads_as_kraken_reads_it(kraken_models: dict[str, Path], synth_gt: Path) -> None:
    fmt = "mlmodel"  # the same network as the safetensors file (the page test compares the two)
    model = open_line_model(kraken_models[fmt], "cpu")
    assert model.engine == "kraken"
    images = sorted((synth_gt / "lines").glob("*.png"))[:3]
    ours = [model.recognise([np.asarray(Image.open(p).convert("L"))], torch.device("cpu"), "fp32")[0]
            for p in images]
    assert [text for text, _ in ours] == kraken_reads(kraken_models[fmt], images)
    assert len({text for text, _ in ours}) > 1  # the reading depends on the line
    assert all(0.0 < conf <= 1.0 for _, conf in ours)


def test_a_page_gets_text_and_confidences_from_both_formats(kraken_models: dict[str, Path], synth_gt: Path,
                                                            tmp_path: Path) -> None:
    xml = sorted(synth_gt.rglob("*.xml"))[0]
    texts = {}
    for fmt in FORMATS:
        report = recognise(kraken_models[fmt], [xml], tmp_path / fmt, device="cpu")
        assert report.engine == "kraken" and report.lines > 1
        tree = etree.parse(str(tmp_path / fmt / xml.name))
        equivs = tree.findall(f".//{PAGE_NS}TextLine/{PAGE_NS}TextEquiv")
        assert len(equivs) == report.lines
        assert all(0.0 < float(e.get("conf")) <= 1.0 for e in equivs)
        texts[fmt] = (tmp_path / fmt / xml.name).with_suffix(".txt").read_text()
        assert texts[fmt].count("\n") == report.lines and texts[fmt].strip()
    assert texts["safetensors"] == texts["mlmodel"]  # one network, two files


def test_the_kind_is_read_from_the_file_not_its_name(kraken_models: dict[str, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "my-model.bin"
    shutil.copy(kraken_models["safetensors"], renamed)
    assert model_engine(renamed) == "kraken" and check_model(renamed) == "kraken"


def test_int8_is_refused_for_a_kraken_model(kraken_models: dict[str, Path]) -> None:
    with pytest.raises(HtrError, match="int8"):
        Recogniser(kraken_models["mlmodel"], int8=True, device="cpu")


def _bad(tmp_path: Path, kraken_models: dict[str, Path]) -> dict[str, Path]:
    blla = Path(str(resources.files("kraken").joinpath("blla.mlmodel")))
    data = kraken_models["safetensors"].read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.mlmodel").write_bytes(b"\x08" + bytes(range(256)) * 4)
    (tmp_path / "notes.txt").write_text("my model is somewhere else\n")
    return {"segmentation": blla, "cut": tmp_path / "cut.safetensors", "garbage": tmp_path / "garbage.mlmodel",
            "neither": tmp_path / "notes.txt"}


@pytest.mark.parametrize(("which", "message", "fix"), [
    ("segmentation", "is a kraken segmentation model (layout analysis), not a recognition model",
     "a segmentation model belongs to --segment-model"),
    ("cut", "cannot be read as a kraken model (damaged, or not a model", "ketos convert"),
    ("garbage", "cannot be read as a kraken model (damaged, or not a model", "ketos convert"),
    ("neither", f"is neither {EXPECTED}", "or a kraken recognition model"),
])
def test_what_is_no_recognition_model_is_named(kraken_models: dict[str, Path], tmp_path: Path, which: str,
                                               message: str, fix: str) -> None:
    path = _bad(tmp_path, kraken_models)[which]
    with pytest.raises(HtrError) as err:
        check_model(path)
    assert err.value.message.startswith(f"{path} {message}") and "\n" not in err.value.message
    assert fix in (err.value.fix or "")
