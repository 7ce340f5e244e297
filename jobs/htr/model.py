"""The CRNN line recogniser: conv blocks with batch norm, stacked BiLSTMs, a CTC output layer.

    image (B, 1, H, W) uint8, 255 = paper
      -> conv blocks: 3x3 conv, BatchNorm, ReLU, 2x2 max-pool (height and width) or 2x1 (height only)
      -> (B, C, H / 2**blocks, W / 2**width_pools) -> frames (T, B, C * H')
      -> BiLSTM x layers -> Linear -> log-probabilities (T, B, 1 + len(codec)); class 0 is the CTC blank

The codec maps class i + 1 to `codec[i]`. `extend_codec` grows the output layer for new
characters when fine-tuning (`--init`): old rows are copied, new rows start small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual torch idiom

from jobs.htr.config import TrainConfig, from_dict
from jobs.htr.errors import HtrError


class ConvBlock(nn.Sequential):
    """3x3 conv (no bias: BatchNorm has one), BatchNorm, ReLU, max-pool."""

    def __init__(self, c_in: int, c_out: int, pool_width: bool) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d((2, 2) if pool_width else (2, 1)),
        )


class CRNN(nn.Module):
    """Line image in, per-frame class log-probabilities out (see the module doc)."""

    def __init__(self, cfg: TrainConfig, height: int, n_classes: int) -> None:
        super().__init__()
        self.height = height
        self.width_stride = 2 ** cfg.width_pools
        blocks, c_in = [], 1
        for i, c_out in enumerate(cfg.channels):
            blocks.append(ConvBlock(c_in, c_out, pool_width=i < cfg.width_pools))
            c_in = c_out
        self.conv = nn.Sequential(*blocks)
        feat = c_in * (height // 2 ** len(cfg.channels))
        self.lstm = nn.LSTM(feat, cfg.lstm_hidden, num_layers=cfg.lstm_layers, bidirectional=True,
                            dropout=cfg.dropout if cfg.lstm_layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(2 * cfg.lstm_hidden, n_classes)
        if cfg.blank_bias:
            with torch.no_grad():
                self.out.bias[0] += cfg.blank_bias  # CTC's blank: most frames of a line emit it

    def frames(self, widths: torch.Tensor) -> torch.Tensor:
        """CTC frames for lines of these pixel widths (the max-pools floor each halving)."""
        return torch.clamp(widths // self.width_stride, min=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) uint8 -> (T, B, n_classes) log-probabilities in float32."""
        x = 1.0 - images.float() / 255.0  # autocast (if on) lowers the convs' precision itself
        x = self.conv(x)  # (B, C, H', T): ink is high, padding (paper) is zero
        b, c, h, t = x.shape
        x = x.permute(3, 0, 1, 2).reshape(t, b, c * h)  # (T, B, C*H')
        x, _ = self.lstm(x)  # (T, B, 2*hidden)
        logits = self.out(self.drop(x))  # (T, B, classes)
        return F.log_softmax(logits.float(), dim=-1)  # CTC wants float32 whatever the autocast


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def encode(text: str, index: dict[str, int]) -> list[int]:
    """Text -> class ids (characters outside the codec are dropped)."""
    return [index[ch] for ch in text if ch in index]


def codec_index(codec: list[str]) -> dict[str, int]:
    """Character -> class id (blank is 0)."""
    return {ch: i + 1 for i, ch in enumerate(codec)}


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor,
                  codec: list[str]) -> list[tuple[str, float]]:
    """Best path: argmax per frame, merge repeats, drop blanks. Returns (text, confidence) per line.

    The confidence is the mean probability of the frames that emitted a character (1.0 when empty).
    """
    probs, best = log_probs.float().exp().max(dim=-1)  # (T, B)
    out = []
    for b in range(best.shape[1]):
        n = int(lengths[b])
        ids = best[:n, b].tolist()
        p = probs[:n, b].tolist()
        chars, confs, prev = [], [], 0
        for cls, prob in zip(ids, p, strict=True):
            if cls not in (0, prev):
                chars.append(codec[cls - 1])
                confs.append(prob)
            prev = cls
        out.append(("".join(chars), sum(confs) / len(confs) if confs else 1.0))
    return out


def extend_codec(model: CRNN, old: list[str], new_chars: list[str]) -> list[str]:
    """Append `new_chars` to the codec of `model`, growing its output layer in place.

    Rows of the blank and the old characters are copied; new rows get small random weights and
    the blank's bias lowered a little, so the fine-tuned model starts from what it knew.
    """
    add = [ch for ch in new_chars if ch not in set(old)]
    if not add:
        return list(old)
    old_layer = model.out
    layer = nn.Linear(old_layer.in_features, old_layer.out_features + len(add))
    with torch.no_grad():
        nn.init.normal_(layer.weight, std=0.01)
        layer.bias.fill_(float(old_layer.bias.min()))  # unseen characters start as the least likely
        layer.weight[: old_layer.out_features] = old_layer.weight
        layer.bias[: old_layer.out_features] = old_layer.bias
    model.out = layer.to(old_layer.weight.device)
    return list(old) + add


# -- loading an exported model (RUN/model.pt) -------------------------------------------------
MODEL_FORMAT = "gpuhire-htr-model"  # what jobs.htr.checkpoint.export_model writes
MODEL_HINT = "a model.pt from gpuhire train"
GIVE_MODEL = "give --model RUN/model.pt of a finished training run"
CHECKPOINT_KEYS = frozenset({"optimizer", "scheduler", "rng", "state"})  # jobs.htr.train's checkpoint


def _model_fix(path: Path, checkpoint: bool = False) -> str:
    beside = path / "model.pt" if path.is_dir() else path.with_name("model.pt")
    if beside != path and beside.is_file():
        return f"give --model {beside}" if not checkpoint else f"use RUN/model.pt: --model {beside}"
    return "use RUN/model.pt, written when the training run finishes" if checkpoint else GIVE_MODEL


def _pickle_strings(path: Path) -> set[str]:
    """The strings in a torch file's pickle, read without running it (pickletools, not pickle)."""
    import pickletools
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            name = next((n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if name is None:
                return set()
            data = zf.read(name)
        return {arg for _, arg, _ in pickletools.genops(data) if isinstance(arg, str)}
    except Exception:  # not a torch zip, or a damaged one: no strings to tell it by
        return set()


def read_model_file(path: Path) -> dict[str, Any]:
    """The contents of an exported model, loaded weights-only (a model file runs no code).

    Every way a file can fail to be a model is an HtrError naming what the file is and what is
    expected: missing, a folder, empty, not a torch file, a training checkpoint, another format.
    """
    path = Path(path)
    if not path.exists():
        raise HtrError(f"model {path} does not exist", _model_fix(path))
    if path.is_dir():
        beside = path / "model.pt"
        raise HtrError(f"--model {path} is a folder", f"give the model file: --model {beside}"
                       if beside.is_file() else "give the model file, " + GIVE_MODEL.split(" ", 2)[2])
    not_model = f"{path} is not a model this trainer wrote ({MODEL_HINT})"
    if path.stat().st_size == 0:
        raise HtrError(f"{path} is empty (0 bytes): {not_model.split(' is ', 1)[1]}", _model_fix(path))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if _pickle_strings(path) >= CHECKPOINT_KEYS:
            raise HtrError(f"{path} is a training checkpoint, not a model",
                           _model_fix(path, checkpoint=True)) from exc
        raise HtrError(not_model, _model_fix(path)) from exc
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise HtrError(not_model, _model_fix(path))
    return blob


def load_exported(path: Path, device: torch.device | str = "cpu") -> tuple[CRNN, list[str], TrainConfig]:
    """Load an exported model in eval mode: (model, codec, config); see `read_model_file`."""
    blob = read_model_file(path)
    try:
        cfg = from_dict(blob["config"], source=str(path))
        model = CRNN(cfg, int(blob["height"]), len(blob["codec"]) + 1)
        model.load_state_dict(blob["state_dict"])
    except HtrError:
        raise
    except Exception as exc:
        raise HtrError(f"{path} is a damaged gpuhire model (its weights do not fit its config)",
                       "export it again, or give another --model RUN/model.pt") from exc
    return model.to(device).eval(), list(blob["codec"]), cfg
