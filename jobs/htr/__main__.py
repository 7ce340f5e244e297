"""`python -m jobs.htr`: synth, compile, train and infer from the command line.

Each command parses its flags, calls one library function and prints. Expected failures print
one line, `error: <message>; <fix>`, and exit 1 (usage errors exit 2); `GPUHIRE_DEBUG=1` shows
the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.htr.errors import HtrError

if TYPE_CHECKING:
    from jobs.htr.events import EventWriter

ENGINES = ("crnn", "kraken")

EXAMPLES = {
    "synth": "python -m jobs.htr synth demo-gt --lines 2000 --seed 1",
    "compile": "python -m jobs.htr compile demo-gt --out demo-ds --height 64",
    "train": "python -m jobs.htr train demo-ds --out run --preset small --epochs 20 --events ev.jsonl\n"
             "  python -m jobs.htr train demo-gt --out krun --engine kraken --epochs 20",
    "infer": "python -m jobs.htr infer --model run/model.pt scans/*.xml --out recognised",
}


def _sub(subs: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    return subs.add_parser(name, help=help_text, description=help_text,
                           epilog=f"Example:\n  {EXAMPLES[name]}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of `python -m jobs.htr`."""
    parser = argparse.ArgumentParser(
        prog="python -m jobs.htr",
        description="Handwritten text recognition: ground truth, training, inference.",
        epilog="Example:\n  " + "\n  ".join(EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    subs = parser.add_subparsers(dest="command", required=True)

    p = _sub(subs, "synth", "Render synthetic ground truth (PAGE XML pages and image + .gt.txt pairs).")
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--lines", type=int, required=True, help="number of lines")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")

    p = _sub(subs, "compile", "Compile ground truth into a memory-mapped dataset for training.")
    p.add_argument("gt", type=Path, nargs="+", help="PAGE/ALTO files, image + .gt.txt pairs, or folders")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--height", type=int, default=64, help="line height in px (default 64)")
    p.add_argument("--normalization", default="NFC", help="Unicode normalisation: NFC, NFD, NFKC, NFKD, none")
    p.add_argument("--val-fraction", type=float, default=0.1, help="seeded validation share (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    p.add_argument("--split", type=Path, nargs=2, metavar=("TRAIN", "VAL"),
                   help="explicit split files (one line key or image path per line)")
    p.add_argument("--engine", choices=ENGINES, default="crnn",
                   help="crnn (gpuhire's memory-mapped dataset, default) or kraken (kraken's binary dataset)")
    p.add_argument("--kraken-spec", help="kraken engine: check line widths against this VGSL spec "
                   "(default: kraken's default network)")

    p = _sub(subs, "train",
             "Train (or resume) a line model: gpuhire's CRNN (RUN gets model.pt) or kraken's own "
             "trainer (--engine kraken: model.safetensors and model.mlmodel); checkpoints, metrics.json.")
    p.add_argument("data", type=Path, help="a compiled dataset, or ground truth (compiled into RUN/dataset)")
    p.add_argument("--out", type=Path, required=True, help="run folder; an existing one is resumed")
    p.add_argument("--engine", choices=ENGINES, default="crnn", help="crnn (default) or kraken")
    p.add_argument("--preset", help="crnn: tiny, small, default (default), large or a .toml file; "
                   "kraken: kraken (default) or a .toml file with a [kraken] table")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--events", type=Path, help="append JSON-line events here (default: stdout)")
    p.add_argument("--job", help="job name in the events (default: env GPUHIRE_JOB, else RUN's name)")
    p.add_argument("--init", type=Path, help="fine-tune from this model (crnn: model.pt; kraken: a kraken "
                   ".safetensors/.mlmodel); new characters are added")
    p.add_argument("--checkpoint-minutes", type=float, help="checkpoint at least this often (default 10)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    k = p.add_argument_group("kraken engine (also in the preset's [kraken] table)")
    k.add_argument("--kraken-spec", help="VGSL spec of the network (kraken's default if not given)")
    k.add_argument("--batch-size", type=int, help="lines per batch")
    k.add_argument("--lr", type=float, help="learning rate")
    k.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="kraken's image augmentation")

    p = _sub(subs, "infer", "Recognise PAGE/ALTO files (with their images), line images, or page scans "
             "(images and PDFs without XML: segmented first).")
    p.add_argument("inputs", type=Path, nargs="+",
                   help="PAGE/ALTO files, line images, page scans (JPEG, PNG, TIFF, PDF), or folders")
    p.add_argument("--model", type=Path, required=True,
                   help="model.pt written by train, or a kraken recognition model (.mlmodel, .safetensors)")
    p.add_argument("--out", type=Path, default=Path("recognised"),
                   help="output folder (default ./recognised)")
    p.add_argument("--int8", action="store_true", help="int8 dynamic quantisation (CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--input", dest="input_mode", choices=("auto", "pages", "lines"), default="auto",
                   help="images without XML: auto (page scans or line images, by their shape), "
                        "pages (all are scans) or lines (none is)")
    p.add_argument("--output-format", choices=("page", "alto"), default="page",
                   help="the layout of page scans: PAGE 2019 (default) or ALTO 4")
    p.add_argument("--segment-model", type=Path,
                   help="your own kraken baseline segmentation model (default: kraken's bundled blla)")
    return parser


KRAKEN_FLAGS = (("kraken_spec", "--kraken-spec"), ("batch_size", "--batch-size"), ("lr", "--lr"),
                ("augment", "--augment"))


def _train_kraken(args: argparse.Namespace, events: EventWriter) -> int:
    from jobs.htr.interrupt import EXIT_INTERRUPTED
    from jobs.htr.kraken_config import load_kraken_config
    from jobs.htr.kraken_train import train_kraken

    cfg = load_kraken_config(args.preset or "kraken", spec=args.kraken_spec, batch_size=args.batch_size,
                             lr=args.lr, augment=args.augment, epochs=args.epochs,
                             checkpoint_minutes=args.checkpoint_minutes)
    result = train_kraken(args.data, args.out, cfg, events=events, init=args.init, device=args.device)
    return EXIT_INTERRUPTED if result.stopped == "interrupted" else 0


def _train(args: argparse.Namespace) -> int:
    from jobs.htr.config import load_config
    from jobs.htr.events import EventWriter
    from jobs.htr.interrupt import EXIT_INTERRUPTED
    from jobs.htr.train import train

    job = args.job or os.environ.get("GPUHIRE_JOB") or args.out.resolve().name
    events = EventWriter(job, args.events, enabled=int(os.environ.get("RANK", "0")) == 0)
    try:  # from here every failure, a bad preset or flag included, is also an `error` event
        if args.engine == "kraken":
            return _train_kraken(args, events)
        given = [flag for name, flag in KRAKEN_FLAGS if getattr(args, name) is not None]
        if given:
            raise HtrError(f"{', '.join(given)}: only the kraken engine takes this",
                           "add --engine kraken, or leave it out (the CRNN engine uses --preset)")
        from jobs.htr.kraken_data import is_kraken_dataset

        if is_kraken_dataset(args.data):
            raise HtrError(f"{args.data} is a dataset compiled for the kraken engine",
                           "add --engine kraken, or give the ground truth (or a CRNN-compiled dataset)")
        if args.preset == "kraken":
            raise HtrError("--preset kraken is the kraken engine's preset", "add --engine kraken")
        cfg = load_config(args.preset or "default", epochs=args.epochs,
                          checkpoint_minutes=args.checkpoint_minutes)
        result = train(args.data, args.out, cfg, events=events, init=args.init, device=args.device)
    except Exception as exc:
        events.emit("error", message=str(exc) or type(exc).__name__)
        raise
    finally:
        events.close()
    return EXIT_INTERRUPTED if result.stopped == "interrupted" else 0


def _infer(args: argparse.Namespace) -> int:
    """Recognise the pages (jobs.htr.pages: the same path as `gpuhire infer` and the fleet's
    workers); a page that fails is named on stderr and the exit status is 1."""
    import tempfile

    from jobs.htr.infer import check_model
    from jobs.htr.pages import list_pages, recognise_pages

    check_model(args.model)  # a file that is no model stops here, before anything
    if args.segment_model is not None and not args.segment_model.is_file():
        raise HtrError(f"--segment-model {args.segment_model} does not exist",
                       "give a kraken segmentation model file, or leave it out for kraken's own")
    pages = list_pages(args.inputs, args.input_mode)
    if not pages:
        raise HtrError("no pages found in " + ", ".join(map(str, args.inputs)),
                       "give PAGE/ALTO *.xml files with their images, page scans, or line images")

    def said(o: object) -> None:
        if getattr(o, "ok", False):
            print(f"{getattr(o, 'key', '')}: {getattr(o, 'lines', 0)} lines", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="gpuhire-infer-") as tmp:
        report, outcomes = recognise_pages(args.model, pages, Path(tmp), args.out, int8=args.int8,
                                           device=args.device, fmt=args.output_format,
                                           segment_model=args.segment_model, on_page=said)
    failed = [o for o in outcomes if not o.ok]
    print(report.summary())
    print(f"{len(outcomes) - len(failed)} pages recognised" + (f", {len(failed)} failed" if failed else ""))
    for o in failed:
        print(f"failed {o.key}: {o.reason}", file=sys.stderr)
    return 1 if failed else 0


def run(argv: list[str] | None = None) -> int:
    """Parse `argv`, run the command, return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "synth":
        from jobs.htr.synth import synth_main

        if args.lines < 1:
            raise HtrError(f"--lines {args.lines} is not a number of lines", "give --lines 1 or more")
        return synth_main(args.out, args.lines, args.seed)
    if args.command == "compile" and args.engine == "kraken":
        from jobs.htr.kraken_config import DEFAULT_SPEC
        from jobs.htr.kraken_data import compile_kraken_main

        return compile_kraken_main(args.gt, args.out, val_fraction=args.val_fraction, seed=args.seed,
                                   split_files=tuple(args.split) if args.split else None,
                                   spec=args.kraken_spec or DEFAULT_SPEC, normalization=args.normalization)
    if args.command == "compile":
        from jobs.htr.dataset import compile_main

        if args.kraken_spec is not None:
            raise HtrError("--kraken-spec only applies to --engine kraken",
                           "add --engine kraken or leave it out")

        return compile_main(args.gt, args.out, height=args.height, normalization=args.normalization,
                            val_fraction=args.val_fraction, seed=args.seed,
                            split_files=tuple(args.split) if args.split else None)
    if args.command == "train":
        return _train(args)
    return _infer(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point: expected errors become one line on stderr and exit status 1."""
    try:
        return run(argv)
    except (HtrError, OSError) as exc:
        if os.environ.get("GPUHIRE_DEBUG") == "1":
            traceback.print_exc()
        fix = "" if isinstance(exc, HtrError) else "; check the path and its permissions"
        print(f"error: {exc}{fix}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line, the traceback on request
        if os.environ.get("GPUHIRE_DEBUG") == "1":
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}; run again with GPUHIRE_DEBUG=1 for the traceback "
              "and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
