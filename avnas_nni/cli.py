"""The ``avnas`` command line: ``avnas data synth|check`` and ``avnas space``.

Every user error (bad data, unknown preset, bad settings) ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)


def _cmd_data_synth(args: argparse.Namespace) -> None:
    from avnas_nni.data import write_synthetic

    kwargs = {k: v for k, v in (("num_class", args.classes), ("d", args.dim), ("seed", args.seed)) if v is not None}
    config = write_synthetic(args.out, **kwargs)
    print(f"wrote the embedded synthetic dataset: {config}")


def _cmd_data_check(args: argparse.Namespace) -> None:
    from avnas_nni.data import check_dataset

    summary = check_dataset(args.config)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return
    width = max(len(str(k)) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")


def _cmd_space(args: argparse.Namespace) -> None:
    from search_spaces import AVNASSpace, cells, count_architectures

    space = AVNASSpace(dim=args.dim, length=args.length, bits=args.bits, expand=args.expand,
                       kernel_size=args.kernel_size, preset=args.preset,
                       modalities=tuple(args.modalities.split(",")))
    table = cells(space)
    if args.json:
        print(json.dumps({"preset": args.preset, "cells": table, "architectures": count_architectures(space)},
                         indent=2))
        return
    width = max(len(label) for label in table)
    print(f"AV-NAS space, preset {args.preset!r}: d={args.dim}, m={args.length}, e={args.expand}, "
          f"q={args.bits}, k={args.kernel_size}, modalities={','.join(space.modalities)}")
    for label, names in table.items():
        print(f"  {label:<{width}}  {len(names)}  {' | '.join(map(str, names))}")
    total = count_architectures(space)
    print(f"architectures: {total:,} ({total:.3e})")
    print(f"parameters (whole supernet): {sum(p.numel() for p in space.parameters()):,}")


def build_parser() -> argparse.ArgumentParser:
    """The ``avnas`` argument parser."""
    parser = argparse.ArgumentParser(prog="avnas", description="AV-NAS audio-visual NAS for video hashing on NNI")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="feature datasets").add_subparsers(dest="data_command", required=True)
    synth = data.add_parser("synth", help="write the embedded synthetic dataset (the lineage's HDF5 layout)")
    synth.add_argument("--out", required=True, type=Path, help="output directory")
    synth.add_argument("--classes", type=int, help="number of classes")
    synth.add_argument("--dim", type=int, help="feature width d")
    synth.add_argument("--seed", type=int, help="generator seed")
    synth.set_defaults(func=_cmd_data_synth)
    check = data.add_parser("check", help="validate a dataset config and print a summary")
    check.add_argument("config", help="dataset JSON config, or 'embedded'")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    check.set_defaults(func=_cmd_data_check)

    space = sub.add_parser("space", help="summarise the search space: cells, candidates, size")
    space.add_argument("--preset", default="paper", help="candidate lists: paper (Table 1) or authors")
    space.add_argument("--dim", type=int, default=768, help="feature width d")
    space.add_argument("--length", type=int, default=25, help="frames per video m")
    space.add_argument("--bits", type=int, default=64, help="code length q")
    space.add_argument("--expand", type=int, default=2, help="Up factor e")
    space.add_argument("--kernel-size", type=int, default=4, help="Conv_k kernel k")
    space.add_argument("--modalities", default="visual,audio", help="visual,audio | visual | audio")
    space.add_argument("--json", action="store_true", help="print as JSON")
    space.set_defaults(func=_cmd_space)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``avnas`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message=".*is found to be not a nn.Module.*")
    from avnas_nni.errors import AVNASError

    try:
        args.func(args)
    except (AVNASError, ValueError) as exc:
        print(f"avnas: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
