"""``python -m autograder.judge LAB NOTEBOOK``: grade one notebook and print the verdicts (for TAs)."""
from __future__ import annotations

import argparse
import time

from . import judge_notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.judge", description=__doc__)
    parser.add_argument("lab", help="lab id, e.g. lab1_autoencoders")
    parser.add_argument("notebook", help="the submitted notebook")
    parser.add_argument("--source", help="source notebook (default: labs/source/LAB/LAB.ipynb)")
    parser.add_argument("--time-limit", type=float, default=300, help="seconds for the whole run (default 300)")
    parser.add_argument("--memory-limit", type=int, default=4096, help="MB of heap for the child (default 4096)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    verdicts, isolation = judge_notebook(args.lab, args.notebook, source=args.source,
                                         time_limit_s=args.time_limit, memory_limit_mb=args.memory_limit)
    for v in verdicts.values():
        print(f"{v.grade_id}: {v.score:g} / {v.max_score:g}")
        for message in v.messages:
            print(f"    {message}")
    total, best = sum(v.score for v in verdicts.values()), sum(v.max_score for v in verdicts.values())
    print(f"total: {total:g} / {best:g}  ({time.monotonic() - start:.1f} s)")
    print(f"isolation: {isolation.describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
