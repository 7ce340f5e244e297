"""Shell completion for the options that take one of a fixed set of values.

Each function is a typer `autocompletion=` callback; it reads the constant the code validates
against, imported when the shell asks (never at `gpuhire --help`), and typer keeps the values
that start with what was typed. The metavars in the command signatures (`--gpu t4|l4|auto`)
list the same values; tests/cli/test_help_metavars.py checks that they agree.
"""

from __future__ import annotations

# Where `gpuhire infer` fleet workers run and the two --format values of `infer` and `advise`:
# the commands check these literally (launcher/commands/infer_cmds.py, ledger_cmds.py,
# config_sections.InferSection.fleet); no shared constant exists yet.
FLEETS = ("aws", "local")
TEXT_FORMATS = ("text", "json")
# `infer --input` (what an image without XML is) and `infer --output-format` (the layout written
# for page scans): infer_cmds checks against these.
INPUT_MODES = ("auto", "pages", "lines")
OUTPUT_FORMATS = ("page", "alto")


def train_providers(incomplete: str) -> list[str]:
    """`train --provider`: auto, then launcher.providers.factory.PROVIDERS."""
    from launcher.providers.factory import PROVIDERS

    return ["auto", *PROVIDERS]


def train_gpus(incomplete: str) -> list[str]:
    """`train --gpu`: the rented GPUs (ledger.catalogue.RENTED_GPUS), or auto."""
    from ledger.catalogue import RENTED_GPUS

    return [*RENTED_GPUS, "auto"]


def rented_gpus(incomplete: str) -> list[str]:
    """`offers --gpu`: ledger.catalogue.RENTED_GPUS."""
    from ledger.catalogue import RENTED_GPUS

    return list(RENTED_GPUS)


def infer_gpus(incomplete: str) -> list[str]:
    """`infer --gpu`: launcher.infer.plan.CHOICES (none, auto and the rented GPUs)."""
    from launcher.infer.plan import CHOICES

    return list(CHOICES)


def fleets(incomplete: str) -> list[str]:
    """`infer --fleet`."""
    return list(FLEETS)


def text_formats(incomplete: str) -> list[str]:
    """`infer --format`, `advise --format`."""
    return list(TEXT_FORMATS)


def input_modes(incomplete: str) -> list[str]:
    """`infer --input`."""
    return list(INPUT_MODES)


def output_formats(incomplete: str) -> list[str]:
    """`infer --output-format`."""
    return list(OUTPUT_FORMATS)


def presets(incomplete: str) -> list[str]:
    """`train --preset`: the shipped trainer presets, the CRNN's and kraken's (a .toml path is
    the other choice)."""
    from jobs.htr.config import PRESETS

    return list(dict.fromkeys([*PRESETS, "kraken"]))


def engines(incomplete: str) -> list[str]:
    """`train --engine`: launcher/train/engine.py ENGINES."""
    from launcher.train.engine import ENGINES

    return list(ENGINES)


def cards(incomplete: str) -> list[str]:
    """`advise --card`, `report --card`: the built-in cards (yours from the config work too)."""
    from ledger.catalogue import BUILTIN_CARDS

    return list(BUILTIN_CARDS)


def markets(incomplete: str) -> list[str]:
    """`ledger add --market`: ledger.costs.MARKETS."""
    from ledger.costs import MARKETS

    return list(MARKETS)


def end_reasons(incomplete: str) -> list[str]:
    """`ledger add --end-reason`: ledger.costs.END_REASONS."""
    from ledger.costs import END_REASONS

    return list(END_REASONS)


def known_providers(incomplete: str) -> list[str]:
    """`ledger add --provider`: the providers with built-in billing rules (any name is accepted)."""
    from ledger.catalogue import BUILTIN_PROVIDERS

    return list(BUILTIN_PROVIDERS)


def known_gpus(incomplete: str) -> list[str]:
    """`ledger add --gpu`: the GPUs with a built-in speed (any model is accepted)."""
    from ledger.catalogue import BUILTIN_SPEEDS

    return list(BUILTIN_SPEEDS)
