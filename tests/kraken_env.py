"""Tiny kraken recognition models for the tests (a module of its own: tests/jobs and tests/infer use it).

A kraken VGSL network from a small spec with a codec of the synthetic lines' characters, its
weights random with a fixed seed (untrained: the tests compare gpuhire's reading with
kraken's own, and check where text goes, not what it says), saved with kraken's
own writers as safetensors (kraken 7's default) and CoreML (.mlmodel, what eScriptorium takes).
"""

from __future__ import annotations

import warnings
from pathlib import Path

SPEC = "[1,32,0,1 Cr3,3,8 Mp2,2 Cr3,3,16 Mp2,2 S1(1x0)1,3 Lbx24]"
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:'-!?()"


def tiny_kraken_models(folder: Path, seg_type: str = "baselines") -> dict[str, Path]:
    """{"safetensors": ..., "mlmodel": ...}: the same tiny recognition network in both formats."""
    import torch

    from jobs.htr.kraken_compat import load_kraken

    load_kraken()
    from kraken.lib.codec import PytorchCodec
    from kraken.lib.vgsl import TorchVGSLModel
    from kraken.models import write_coreml, write_safetensors

    torch.manual_seed(0)
    codec = PytorchCodec(sorted(set(CHARS)))
    # the codec as a mapping (what kraken's own trainer passes when it builds the final model):
    # kraken 7.1.1's safetensors loader cannot rebuild a model whose codec was set by add_codec
    net = TorchVGSLModel(vgsl=SPEC[:-1] + f" O1c{codec.max_label + 1}]", codec=codec.c2l,
                         model_type=["recognition"], seg_type=seg_type, one_channel_mode="L")
    with torch.no_grad():  # kraken's initialisation reads every line as the same few letters:
        for p in net.parameters():  # random weights make the reading depend on the line
            p.normal_(0.0, 0.3)
    folder.mkdir(parents=True, exist_ok=True)
    for old in (folder / "tiny.safetensors", folder / "tiny.mlmodel"):
        old.unlink(missing_ok=True)  # kraken's writers refuse to overwrite
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kraken 8 deprecations
        write_safetensors([net], folder / "tiny.safetensors")
        write_coreml([net], folder / "tiny.mlmodel")
    return {"safetensors": folder / "tiny.safetensors", "mlmodel": folder / "tiny.mlmodel"}


def kraken_reads(model: Path, images: list[Path]) -> list[str]:
    """What kraken's own API reads in bare line images (each image one bounding-box line)."""
    from PIL import Image

    from jobs.htr.kraken_compat import load_kraken

    load_kraken()
    from kraken.configs import RecognitionInferenceConfig
    from kraken.containers import BBoxLine, Segmentation
    from kraken.tasks import RecognitionTaskModel

    texts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = RecognitionTaskModel.load_model(model)
        config = RecognitionInferenceConfig(accelerator="cpu", device=1, precision="32-true", num_line_workers=0)
        for image in images:
            im = Image.open(image)
            seg = Segmentation(type="bbox", imagename=str(image), text_direction="horizontal-lr",
                               lines=[BBoxLine(id="l", bbox=(0, 0, im.width, im.height))], script_detection=False)
            texts.append("".join(r.prediction for r in task.predict(im, seg, config)))
    return texts
