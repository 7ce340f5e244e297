"""Compiling ground truth into the memory-mapped dataset, splits, and reading it back."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from jobs.htr.dataset import FILES, CompiledDataset, compile_dataset, compile_main, is_compiled_dataset
from jobs.htr.errors import GroundTruthError
from jobs.htr.gt import iter_samples
from jobs.htr.lineimage import fit_height


def test_memmap_returns_exactly_the_compiled_pixels(gt_tree: Path, tmp_path: Path) -> None:
    report = compile_dataset([gt_tree], tmp_path / "ds", height=48, val_fraction=0.2, seed=3)
    ds = CompiledDataset(tmp_path / "ds")
    expected = list(iter_samples([gt_tree]))
    assert len(ds) == report.lines == len(expected) == 13
    for i, sample in enumerate(expected):
        image = ds.image(i)
        assert image.dtype == np.uint8 and image.shape == (48, ds.widths[i])
        np.testing.assert_array_equal(image, fit_height(sample.image, 48))
        assert ds.text(i) == sample.text and ds.key(i) == sample.key
    assert isinstance(ds.image(0).base, np.memmap) or isinstance(ds.image(0), np.memmap)
    assert not ds.image(0).flags.writeable
    assert ds.codec == sorted(set("".join(ds.texts)))
    assert sorted(ds.train_ids.tolist() + ds.val_ids.tolist()) == list(range(13))
    assert len(ds.val_ids) == round(13 * 0.2)
    assert ds.meta["height"] == 48 and ds.meta["normalization"] == "NFC" and ds.meta["lines"] == 13
    assert report.gt.counts == {"empty-text": 4, "missing-image": 1, "outside-page": 1}
    assert json.loads((tmp_path / "ds" / "report.json").read_text())["counts"] == report.gt.counts


def test_width_follows_the_aspect_ratio(gt_tree: Path, tmp_path: Path) -> None:
    compile_dataset([gt_tree / "pairs"], tmp_path / "ds", height=64, val_fraction=0.0)
    ds = CompiledDataset(tmp_path / "ds")
    assert ds.widths.tolist() == [round(320 * 64 / 48), round(280 * 64 / 40)]
    assert len(ds.val_ids) == 0 and ds.train_ids.tolist() == [0, 1]


def test_compile_is_deterministic_for_a_seed(synth_gt: Path, tmp_path: Path) -> None:
    first = compile_dataset([synth_gt], tmp_path / "a", seed=5)
    second = compile_dataset([synth_gt], tmp_path / "b", seed=5)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first.source_hash == second.source_hash
    compile_dataset([synth_gt], tmp_path / "c", seed=6)
    split_a = json.loads((tmp_path / "a" / "split.json").read_text())
    split_c = json.loads((tmp_path / "c" / "split.json").read_text())
    assert split_a["val"] != split_c["val"]  # another seed, another split ...
    assert (tmp_path / "a" / "images.u8").read_bytes() == (tmp_path / "c" / "images.u8").read_bytes()


def test_seeded_split_does_not_depend_on_input_order(synth_gt: Path, tmp_path: Path) -> None:
    compile_dataset([synth_gt / "pages", synth_gt / "lines"], tmp_path / "a", seed=1)
    compile_dataset([synth_gt / "lines", synth_gt / "pages"], tmp_path / "b", seed=1)
    a, b = CompiledDataset(tmp_path / "a"), CompiledDataset(tmp_path / "b")
    assert {a.key(i) for i in a.val_ids} == {b.key(i) for i in b.val_ids}
    assert len(a.val_ids) == 12


def test_explicit_split_files_are_honoured(gt_tree: Path, tmp_path: Path) -> None:
    train = tmp_path / "train.txt"
    val = tmp_path / "val.txt"
    train.write_text("# training lines\npage2013/page_2013.xml#r1l1\n\n"
                     f"{gt_tree / 'alto' / 'alto_v4.png'}\n")  # a page image: all its lines
    val.write_text("l001.gt.txt\ntranskribus/page/page_2019.xml#tl_2\n")
    report = compile_dataset([gt_tree], tmp_path / "ds", split_files=(train, val))
    ds = CompiledDataset(tmp_path / "ds")
    assert sorted(ds.key(i) for i in ds.train_ids) == [
        "alto/alto_v4.xml#line_1", "alto/alto_v4.xml#line_2", "alto/alto_v4.xml#line_3",
        "page2013/page_2013.xml#r1l1"]
    assert sorted(ds.key(i) for i in ds.val_ids) == ["pairs/l001", "transkribus/page/page_2019.xml#tl_2"]
    assert report.unassigned == 13 - 6 and ds.meta["unassigned"] == 7
    assert json.loads((tmp_path / "ds" / "split.json").read_text())["method"] == "files"


def test_split_file_relative_paths_resolve_against_the_split_file(gt_tree: Path) -> None:
    (gt_tree / "train.txt").write_text("pairs/l002.bin.png\n")
    (gt_tree / "val.txt").write_text("pairs/l001.png\n")
    compile_dataset([gt_tree / "pairs"], gt_tree.parent / "ds",
                    split_files=(gt_tree / "train.txt", gt_tree / "val.txt"))
    ds = CompiledDataset(gt_tree.parent / "ds")
    assert [ds.key(i) for i in ds.train_ids] == ["l002"] and [ds.key(i) for i in ds.val_ids] == ["l001"]


def test_bad_split_files(gt_tree: Path, tmp_path: Path) -> None:
    both = tmp_path / "both.txt"
    both.write_text("l001.gt.txt\n")
    with pytest.raises(GroundTruthError, match="listed in both"):
        compile_dataset([gt_tree / "pairs"], tmp_path / "ds", split_files=(both, both))
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("no-such-line\n")
    with pytest.raises(GroundTruthError, match="names none of the usable lines"):
        compile_dataset([gt_tree / "pairs"], tmp_path / "ds", split_files=(nothing, both))
    with pytest.raises(GroundTruthError, match="cannot read split file"):
        compile_dataset([gt_tree / "pairs"], tmp_path / "ds", split_files=(tmp_path / "absent.txt", both))
    assert not (tmp_path / "ds").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")] == []  # no partial dirs left


def test_normalization_reaches_the_codec(gt_tree: Path, tmp_path: Path) -> None:
    compile_dataset([gt_tree / "page2013"], tmp_path / "nfc")
    compile_dataset([gt_tree / "page2013"], tmp_path / "nfd", normalization="NFD")
    nfc, nfd = CompiledDataset(tmp_path / "nfc"), CompiledDataset(tmp_path / "nfd")
    assert "ü" in nfc.codec and "\u0308" not in nfc.codec
    assert "\u0308" in nfd.codec and "ü" not in nfd.codec
    assert nfd.meta["normalization"] == "NFD"


def test_pickled_dataset_reopens_its_memmap(compiled_synth: CompiledDataset) -> None:
    compiled_synth.image(0)  # map it in this process first
    copy = pickle.loads(pickle.dumps(compiled_synth))
    assert copy._images is None  # the map itself did not travel
    np.testing.assert_array_equal(copy.image(5), compiled_synth.image(5))
    assert copy.text(5) == compiled_synth.text(5) and len(copy) == len(compiled_synth) == 120


def test_nothing_usable_leaves_no_dataset(bad_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(GroundTruthError, match="no usable line"):
        compile_dataset([bad_tree], tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_output_folder_rules(gt_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(GroundTruthError, match="not a compiled dataset"):
        compile_dataset([gt_tree / "pairs"], other)
    assert compile_main([gt_tree / "pairs"], tmp_path / "ds", height=32) == 0
    assert "compiled 2 lines" in capsys.readouterr().out
    compile_dataset([gt_tree / "alto"], tmp_path / "ds")  # an old dataset is replaced
    assert len(CompiledDataset(tmp_path / "ds")) == 5 and is_compiled_dataset(tmp_path / "ds")
    with pytest.raises(GroundTruthError, match="line height 4 px"):
        compile_dataset([gt_tree], tmp_path / "x", height=4)


def test_damaged_or_foreign_dataset_is_refused(gt_tree: Path, tmp_path: Path) -> None:
    compile_dataset([gt_tree / "pairs"], tmp_path / "ds")
    with open(tmp_path / "ds" / "images.u8", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(GroundTruthError, match=r"damaged.*compile the ground truth again"):
        CompiledDataset(tmp_path / "ds")
    with pytest.raises(GroundTruthError, match=r"not a compiled dataset.*python -m jobs\.htr compile"):
        CompiledDataset(gt_tree)
    meta = tmp_path / "ds" / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "version": 99}))
    with pytest.raises(GroundTruthError, match="version 99"):
        CompiledDataset(tmp_path / "ds")


def test_parallel_compile_gives_the_same_dataset(synth_gt: Path, tmp_path: Path) -> None:
    serial = compile_dataset([synth_gt], tmp_path / "one", workers=1)
    parallel = compile_dataset([synth_gt], tmp_path / "three", workers=3)
    for name in FILES:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes(), name
    assert parallel.gt.to_dict() == serial.gt.to_dict()


def test_parallel_compile_keeps_the_bad_sample_report_in_file_order(gt_tree: Path, bad_tree: Path,
                                                                     tmp_path: Path) -> None:
    serial = compile_dataset([bad_tree, gt_tree], tmp_path / "one", workers=1)
    parallel = compile_dataset([bad_tree, gt_tree], tmp_path / "two", workers=2)
    assert parallel.gt.skipped == serial.gt.skipped and len(serial.gt.skipped) == 12
    assert (parallel.lines, parallel.gt.files) == (serial.lines, serial.gt.files)
