"""Import kraken where the installed torchvision's compiled operators do not match CPU torch.

kraken imports torchvision. The registry's torchvision wheel that pip resolves next to the CPU
build of torch can lack its compiled extension (or carry one built for another torch); its
`_meta_registrations` then asks torch to register fake kernels for `torchvision::nms` and
`torchvision::qnms`, operators that no loaded library defined, and `import torchvision` fails with
"operator torchvision::nms does not exist". kraken never calls those two operators (layout analysis
and recognition use none of torchvision's compiled ops), so declaring their schemas once is enough
for the import to succeed. `load_kraken` does that only where torchvision's own import fails with
exactly that error; kraken itself is never patched, and where torchvision imports cleanly nothing
is registered.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from jobs.htr.errors import HtrError

INSTALL_FIX = "install the kraken extra: pip install 'gpuhire[kraken]'"

# The schemas torchvision's C++ extension defines for the two operators its _meta_registrations
# module needs at import (torchvision/csrc/ops/nms.cpp, qnms in quantized/cpu/qnms_kernel.cpp).
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_MISSING_OPERATOR = "operator torchvision::nms does not exist"

# Holds the torch.library.Library with the declared schemas: module-level, so the definitions live
# as long as the process (a Library's definitions are dropped when the object is collected).
_LIBRARY: list[Any] = []


class KrakenMissingError(HtrError):
    """kraken (the `kraken` extra) is not installed in this environment."""

    def __init__(self, message: str = "kraken is not installed", fix: str | None = INSTALL_FIX) -> None:
        super().__init__(message, fix)


def _purge_torchvision() -> None:
    """Drop the half-imported torchvision modules a failed import left in sys.modules."""
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


def _declare_torchvision_operators() -> bool:
    """Declare torchvision::nms and ::qnms once; True when this call declared them."""
    if _LIBRARY:
        return False
    import torch

    library = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]
    for schema in _SCHEMAS:
        library.define(schema)  # type: ignore[no-untyped-call]
    _LIBRARY.append(library)
    return True


def import_torchvision() -> bool:
    """Import torchvision, declaring its two missing operators only where its import fails for
    lack of them. True when the shim was used (now or earlier in this process)."""
    try:
        importlib.import_module("torchvision")
        return bool(_LIBRARY)
    except RuntimeError as exc:
        if _MISSING_OPERATOR not in str(exc):
            raise
    _purge_torchvision()
    _declare_torchvision_operators()
    importlib.import_module("torchvision")
    return True


def shim_used() -> bool:
    """Whether this process declared torchvision's operators itself."""
    return bool(_LIBRARY)


def load_kraken() -> None:
    """Make `import kraken` (and kraken.blla, kraken.lib.vgsl) work in this process.

    Raises KrakenMissingError when kraken is not installed."""
    try:
        importlib.import_module("torch")
    except ImportError as exc:
        raise KrakenMissingError("torch is not installed") from exc
    try:
        import_torchvision()
    except ImportError as exc:
        raise KrakenMissingError("torchvision (a dependency of kraken) is not installed") from exc
    try:
        importlib.import_module("kraken")
        importlib.import_module("kraken.blla")
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] in ("kraken",):
            raise KrakenMissingError() from exc
        raise KrakenMissingError(f"kraken cannot be imported ({exc})") from exc
