"""Kraken recognition models in: what a model file is, and a kraken model reading line images.

`jobs.htr.infer.open_line_model(path, device)` decides what `--model` is by reading the file,
not by its name alone (`model_engine` here): a torch archive is gpuhire's model
(jobs.htr.model.load_exported: its own errors for a training checkpoint, a damaged export, ...);
a safetensors or CoreML file is a kraken model (`kraken_lines`), loaded with kraken 7's loaders
(`kraken.models.load_models`: `.safetensors`, kraken 7's default, and `.mlmodel`, what
eScriptorium exchanges). Anything else gets one line naming both kinds it could have been. A
kraken *segmentation* model (blla.mlmodel) is named as such: it goes to --segment-model.

Both kinds recognise the same line images (jobs.htr.gt cuts them out of PAGE/ALTO polygons or
reads them as they are) through one interface, `recognise(images) -> [(text, confidence)]`
(jobs.htr.infer.LineModel). A kraken model sees them as kraken would: its own input transforms
(16 px of paper either side; a bare line image centre-line normalised, as kraken reads a
bounding-box line; a PAGE/ALTO line scaled to the network's height, as kraken reads a baseline
line), its network, its greedy CTC decoder and codec, and the Unicode bidi reordering kraken
applies by default. The line's confidence is the mean of its characters' (1.0 when empty), as
for the CRNN. Lines are batched by width under a pixel budget, as for the CRNN.
"""

from __future__ import annotations

import json
import struct
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.htr.errors import HtrError

if TYPE_CHECKING:  # torch and numpy are imported where a model is loaded: the sniffing needs neither
    import numpy as np
    import torch

KRAKEN_SUFFIXES = (".mlmodel", ".safetensors")
ENGINES = ("crnn", "kraken")
PADDING_PX = 16  # kraken's RecognitionInferenceConfig default
BATCH_PIXELS = 2_000_000
MAX_BATCH = 64
EXPECTED = ("a gpuhire model (RUN/model.pt from gpuhire train) nor a kraken recognition model "
            "(.mlmodel or .safetensors)")
GIVE = "give --model RUN/model.pt of a finished training run, or a kraken recognition model"
SEGMENTATION_FIX = ("give a kraken recognition model (from `ketos train` or `gpuhire train --engine kraken`) "
                    "or RUN/model.pt; a segmentation model belongs to --segment-model")
DAMAGED_FIX = ("copy or export the model again (`ketos convert` rewrites kraken models), "
               "or give another --model")
SEGMENTATION = "is a kraken segmentation model (layout analysis), not a recognition model"


# -- what a file is -------------------------------------------------------------------------------
def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with its header's length (u64, little endian) and a JSON object."""
    try:
        with path.open("rb") as f:
            head = f.read(9)
            if len(head) < 9 or head[8:9] != b"{":
                return False
            size = struct.unpack("<Q", head[:8])[0]
            return bool(2 <= size <= min(path.stat().st_size - 8, 100_000_000))
    except OSError:
        return False


def _is_coreml(path: Path) -> bool:
    """A CoreML model is a protobuf `Model` whose first field is specificationVersion (a varint)."""
    try:
        with path.open("rb") as f:
            return f.read(1) == b"\x08"
    except OSError:
        return False


def kraken_format(path: Path) -> str | None:
    """".safetensors" or ".mlmodel" when the file's first bytes are kraken's formats', else None."""
    path = Path(path)
    if not path.is_file() or zipfile.is_zipfile(path):
        return None
    return ".safetensors" if _is_safetensors(path) else ".mlmodel" if _is_coreml(path) else None


def model_engine(path: Path) -> str:
    """"kraken" or "crnn", from the file's first bytes (or, unreadable, its name); nothing is loaded."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return "crnn"
    if path.suffix.lower() in KRAKEN_SUFFIXES or kraken_format(path) is not None:
        return "kraken"
    return "crnn"


# -- kraken -----------------------------------------------------------------------------------------
def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else text


def _kraken_meta_types(path: Path) -> list[str]:
    """The model types a kraken file declares (empty when it declares none or cannot be read)."""
    types: list[str] = []
    try:
        if _is_safetensors(path):
            with path.open("rb") as f:
                size = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(size))
            meta = json.loads((header.get("__metadata__") or {}).get("kraken_meta", "null")) or {}
            for entry in meta.values():
                types += list(entry.get("_tasks") or [])
    except Exception:
        return []
    return types


def load_kraken_recognition(path: Path) -> Any:
    """The kraken recognition network in `path` (a TorchVGSLModel), on the CPU, in eval mode."""
    from jobs.htr.kraken_compat import load_kraken

    load_kraken()
    from kraken.models import load_models  # type: ignore[import-untyped,unused-ignore]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kraken 8 deprecations, a legacy-model note
        try:
            models = load_models(path)
        except Exception as exc:  # kraken raises ValueError/RuntimeError for every way a file fails
            if "segmentation" in _kraken_meta_types(path):
                raise HtrError(f"{path} {SEGMENTATION}", SEGMENTATION_FIX) from exc
            raise HtrError(f"{path} cannot be read as a kraken model (damaged, or not a model: "
                           f"{_short(exc)})", DAMAGED_FIX) from exc
    recognisers = [m for m in models if "recognition" in (getattr(m, "model_type", None) or [])]
    if not recognisers:
        kinds = sorted({t for m in models for t in (getattr(m, "model_type", None) or [])})
        if "segmentation" in kinds:
            raise HtrError(f"{path} {SEGMENTATION}", SEGMENTATION_FIX)
        raise HtrError(f"{path} is a kraken model of type {', '.join(kinds) or 'unknown'}, not a recognition "
                       "model", SEGMENTATION_FIX.split(";", maxsplit=1)[0])
    net = recognisers[0]
    if getattr(net, "codec", None) is None or not hasattr(net, "input"):
        raise HtrError(f"{path} is a kraken recognition model without a codec or input shape (damaged)",
                       DAMAGED_FIX)
    return net.eval()


_LOADED: dict[tuple[str, int, int, str], KrakenLines] = {}  # the last kraken model loaded


def kraken_lines(path: Path, device: torch.device) -> KrakenLines:
    """The kraken model in `path`, loaded once per process for the same file (same size and
    mtime) and device: the launcher checks the model before it recognises with it, and kraken's
    loaders build the network anew each time (seconds for a large one)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(device))
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = KrakenLines(path, device)
    return _LOADED[key]


class KrakenLines:
    """A kraken recognition model, recognising gpuhire's line images (see the module doc)."""

    engine = "kraken"

    def __init__(self, path: Path, device: torch.device) -> None:
        self.path = Path(path)
        self.net = load_kraken_recognition(self.path).to(device)
        from kraken.lib.ctc_decoder import greedy_decoder  # type: ignore[import-untyped,unused-ignore]
        from kraken.lib.dataset import ImageInputTransforms  # type: ignore[import-untyped,unused-ignore]

        self.decoder = greedy_decoder
        _, channels, height, width = self.net.input
        self.channels = channels
        self.height = height
        make = ImageInputTransforms
        self.centred = make(1, height, width, channels, (PADDING_PX, 0), valid_norm=True)
        self.plain = make(1, height, width, channels, (PADDING_PX, 0), valid_norm=False)

    def _tensor(self, image: np.ndarray, box: bool) -> torch.Tensor | None:
        from PIL import Image

        im = Image.fromarray(image, "L")
        if self.channels == 3:
            im = im.convert("RGB")
        try:
            tensor: torch.Tensor = (self.centred if box else self.plain)(im)
        except Exception:  # centre-line normalisation fails on some crops: scale instead
            try:
                tensor = self.plain(im)
            except Exception:  # nothing kraken can read (kraken gives such a line no text)
                return None
        return tensor

    def recognise(self, images: list[np.ndarray], device: torch.device, precision: str,
                  boxes: list[bool] | None = None) -> list[tuple[str, float]]:
        """Text and confidence per line image; `boxes[i]`: image i is a bare line image (kraken
        reads those as bounding-box lines: centre-line normalised), not a PAGE/ALTO line (kraken
        cuts those out along their baseline and scales them: no normalisation)."""
        import torch

        with torch.inference_mode():
            return self._recognise(images, device, precision, boxes or [True] * len(images))

    def _recognise(self, images: list[np.ndarray], device: torch.device, precision: str,
                   boxes: list[bool]) -> list[tuple[str, float]]:
        import numpy as np
        import torch

        from jobs.htr.hardware import autocast_dtype
        from jobs.htr.sampler import make_batches

        results: list[tuple[str, float]] = [("", 0.0)] * len(images)
        tensors: list[torch.Tensor] = []
        ids: list[int] = []
        for i, image in enumerate(images):
            tensor = None if 0 in image.shape or image.min() == image.max() else self._tensor(image, boxes[i])
            if tensor is not None and tensor.shape[-1] > 0:
                tensors.append(tensor)
                ids.append(i)
        if not tensors:
            return results
        widths = np.array([t.shape[-1] for t in tensors])
        dtype = autocast_dtype(precision)
        height = int(tensors[0].shape[-2])
        for batch in make_batches(np.arange(len(tensors)), widths, height, BATCH_PIXELS, MAX_BATCH, None):
            widest = int(max(widths[k] for k in batch))
            pad = torch.nn.functional.pad
            x = torch.stack([pad(tensors[k], (0, widest - int(widths[k]))) for k in batch])
            lens = torch.tensor([int(widths[k]) for k in batch], dtype=torch.long)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits, olens = self.net.nn(x.to(device), lens.to(device))
            probs = logits.float().softmax(1).squeeze(2)
            olens = olens if olens is not None else torch.full((len(batch),), probs.shape[-1])
            for k, labels in zip(batch, self.decoder(probs.cpu(), olens.cpu()), strict=True):
                results[ids[k]] = self._text(labels)
        return results

    def _text(self, labels: list[tuple[int, int, int, float]]) -> tuple[str, float]:
        decoded = self.net.codec.decode(labels)
        text = "".join(c for c, *_ in decoded)
        confidences = [float(c) for *_, c in decoded]
        if text:
            text = _logical_order(text, confidences)
        return text, (sum(confidences) / len(confidences) if confidences else 1.0)


def _logical_order(text: str, confidences: list[float]) -> str:
    """The prediction (display order) in reading order, as kraken's records give it by default."""
    from kraken.containers import BBoxLine, BBoxOCRRecord  # type: ignore[import-untyped,unused-ignore]

    cuts = [[[0, 0], [0, 1], [1, 1], [1, 0]]] * len(text)
    try:
        record = BBoxOCRRecord(text, cuts, confidences[:len(text)] + [1.0] * (len(text) - len(confidences)),
                               BBoxLine(id="l", bbox=(0, 0, 1, 1)))
        return str(record.logical_order().prediction)
    except Exception:  # text kraken's bidi cannot reorder: as predicted
        return text
