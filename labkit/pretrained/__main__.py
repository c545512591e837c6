"""``python -m labkit.pretrained verify | train <names | all> | table [--write README.md] | takeoff [--every N]``."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from labkit import pretrained
from labkit.pretrained import table as tables
from labkit.pretrained.takeoff import takeoff
from labkit.runtime import get_device


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m labkit.pretrained",
                                     description="The shipped dSprites encoders: check, retrain, measure.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("verify", help="check that every shipped file is present and matches its sha256")
    t = sub.add_parser("train", help="retrain registry entries and update manifest.json")
    t.add_argument("names", nargs="+", help=f"'all' or some of: {', '.join(pretrained.NAMES)}")
    t.add_argument("--device", default=None)
    tb = sub.add_parser("table", help="the lab's accuracy table from the shipped encoders")
    tb.add_argument("--device", default=None)
    tb.add_argument("--write", metavar="README", default=None,
                    help=f"rewrite the block between the marker lines of this file and {tables.JSON_NAME}")
    tk = sub.add_parser("takeoff", help="retrain a SimCLR recipe and print lab 4's probe every few epochs")
    tk.add_argument("name", nargs="?", default="simclr")
    tk.add_argument("--every", type=int, default=10, metavar="EPOCHS")
    tk.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    if args.command == "verify":
        problems = pretrained.verify()
        print("\n".join(problems) if problems else f"all {len(pretrained.manifest())} files match manifest.json")
        raise SystemExit(1 if problems else 0)
    if args.command == "train":
        names = pretrained.NAMES if args.names == ["all"] else args.names
        unknown = [n for n in names if n not in pretrained.RECIPES]
        if unknown:
            parser.error(f"unknown names {unknown}; choose from {', '.join(pretrained.NAMES)} or 'all'")
        device = torch.device(args.device) if args.device else get_device()
        for name in names:
            start = time.perf_counter()
            states = pretrained.train(name, device)
            pretrained.save(name, states, time.perf_counter() - start, device)
            print(pretrained.describe(name), flush=True)
        return
    if args.command == "takeoff":
        takeoff(args.every, args.name, args.device)
        return
    if args.write is not None:  # fail on a README without the markers before two minutes of work
        tables.block_span(Path(args.write).read_text(), args.write)
    result = tables.accuracy_table(args.device)
    print(tables.format_table(result, tables.NEUROMATCH))
    if args.write is not None:
        tables.write(args.write, result, args.device)
        print(f"rewrote the generated block of {args.write} and {tables.json_path()}")


if __name__ == "__main__":
    main()
