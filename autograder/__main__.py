"""``python -m autograder <command>``: release, autograde, feedback, report, demo. See --help."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .course import LABS_DIR, Course, CourseError, Labs, use_venv_path
from .feedback_jail import KernelLimits

DESCRIPTION = """\
The course's instructor workflow on top of nbgrader.

  release    labs/source/<lab>/<lab>.ipynb -> labs/release/<lab>/<lab>.ipynb (deterministic; --check for drift)
  autograde  grade DIR/submitted/<student>/<lab>/<lab>.ipynb: the judge scores, nbgrader's gradebook records
             (--jobs N at a time, --scheduler tcp://HOST:PORT on a Dask cluster; unchanged ones skipped)
  collect    unpack an LMS download (--zip FILE, Canvas, Moodle or plain) into DIR/submitted/
  feedback   DIR/feedback/<student>/<lab>/<lab>.html (hidden test code never shown)
  report     the grade table from the gradebook (table or CSV)
  judge      grade one notebook with the judge alone and print its verdicts (for TAs)
  worker     a Dask worker for autograde --scheduler (start one per machine)
  demo       the whole round trip on known submissions in a temporary course directory

A course directory (--course-dir) needs only submitted/<student>/<lab>/<lab>.ipynb;
source/, release/, autograded/, feedback/, gradebook.db and nbgrader_config.py are created.
"""


def _course(args) -> Course:
    return Course(Path(args.course_dir), labs=Labs(Path(args.labs_dir)), db_url=args.db)


def _judge(spec: str | None):
    """``module:function`` -> the function (the default is the course's judge)."""
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name or "judge_notebook")
    except (ImportError, AttributeError) as err:
        raise CourseError(f"--judge {spec!r}: {err}") from None


def _limits(args) -> KernelLimits:
    return KernelLimits(cell_timeout=args.cell_timeout, wall_timeout=args.timeout, memory_mb=args.memory_mb)


def cmd_release(args) -> int:
    from .release import release_all

    labs = Labs(Path(args.labs_dir))
    names = labs.names() if args.all or not args.labs else [labs.check(lab) for lab in args.labs]
    return release_all(names, check_only=args.check, labs=labs)


def cmd_autograde(args) -> int:
    from .grading import autograde

    course = _course(args)
    if args.jobs < 1:
        raise CourseError(f"--jobs {args.jobs}: need at least 1")
    scheduler = args.scheduler or ("local" if args.dask else None)
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    results = autograde(course, course.labs.check(args.lab), student=args.student, judge=_judge(args.judge),
                        limits=_limits(args), execute=not args.no_execute, jobs=args.jobs, scheduler=scheduler,
                        force=args.force, progress=progress, submission_timeout=args.submission_timeout)
    db = f" --db {args.db}" if args.db else ""
    failed = [r.student for r in results if r.status == "failed"]
    print(f"[autograde] done; next: python -m autograder feedback {args.lab} --course-dir {args.course_dir}{db}")
    return 1 if failed else 0


def cmd_collect(args) -> int:
    from .collect import collect

    course = _course(args)
    collect(course, course.labs.check(args.lab), Path(args.zip), fmt=args.format, max_mb=args.max_mb)
    return 0


def cmd_feedback(args) -> int:
    from .feedback import feedback

    course = _course(args)
    feedback(course, course.labs.check(args.lab), student=args.student)
    return 0


def cmd_report(args) -> int:
    from .report import grade_rows, render

    course = _course(args)
    if not Path(course.root).is_dir():
        raise CourseError(f"no course directory at {course.root}")
    columns, rows = grade_rows(course, args.lab, per_test=args.per_test)
    text = render(columns, rows, args.format)
    if args.output:
        Path(args.output).write_text(text)
        print(f"[report] {len(rows)} row(s) -> {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_judge(args) -> int:
    """Grade one notebook with the judge alone (no gradebook, no kernel step) and print the verdicts."""
    import time

    from .exercises import judge_lab

    labs = Labs(Path(args.labs_dir))
    lab = labs.check(args.lab)
    start = time.monotonic()
    verdicts, isolation = judge_lab(lab, args.notebook, source=args.source or labs.source(lab),
                                    time_limit_s=args.time_limit, memory_limit_mb=args.memory_limit)
    for v in verdicts.values():
        print(f"{v.grade_id}: {v.score:g} / {v.max_score:g}")
        for message in v.messages:
            print(f"    {message}")
    total, best = sum(v.score for v in verdicts.values()), sum(v.max_score for v in verdicts.values())
    print(f"total: {total:g} / {best:g}  ({time.monotonic() - start:.1f} s)")
    print(f"isolation: {isolation.describe()}")
    return 0


def cmd_worker(args) -> int:
    from .cluster import start_worker

    return start_worker(args.scheduler, nworkers=args.nworkers, name=args.name)


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.course_dir, labs=Labs(Path(args.labs_dir)), judge=_judge(args.judge), limits=_limits(args),
                    execute=not args.no_execute)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labs-dir", default=str(LABS_DIR), help="folder with source/<lab>/ and release/<lab>/ (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("release", help="generate the student release of labs (or check it for drift)")
    p.add_argument("labs", nargs="*", metavar="LAB", help="lab ids (default: every lab under labs/source)")
    p.add_argument("--all", action="store_true", help="every lab under labs/source")
    p.add_argument("--check", action="store_true", help="regenerate into a temporary folder and exit 1 if the committed release differs")
    p.set_defaults(func=cmd_release)

    def course_options(p, db=True):
        p.add_argument("--course-dir", required=True, help="grading workspace in nbgrader's layout (needs submitted/<student>/<lab>/<lab>.ipynb)")
        if db:
            p.add_argument("--db", help="gradebook as an SQLAlchemy URL (default: sqlite:///<course-dir>/gradebook.db)")

    def kernel_options(p):
        d = KernelLimits()
        p.add_argument("--judge", metavar="MODULE:FUNCTION", help="another judge with judge_lab's contract (default: autograder.exercises:judge_lab)")
        p.add_argument("--cell-timeout", type=int, default=d.cell_timeout, help="seconds per notebook cell in the kernel step (default: %(default)s)")
        p.add_argument("--timeout", type=int, default=d.wall_timeout, help="seconds for one student's whole kernel step (default: %(default)s)")
        p.add_argument("--memory-mb", type=int, default=d.memory_mb, help="memory per process in the kernel step, MB (default: %(default)s)")
        p.add_argument("--no-execute", action="store_true",
                       help="skip nbgrader's kernel step: same scores (the judge's), feedback without fresh outputs")

    p = sub.add_parser("autograde", help="grade the submissions of one lab (all students, or --student)")
    p.add_argument("lab", metavar="LAB")
    course_options(p)
    p.add_argument("--student", help="only this student")
    kernel_options(p)
    p.add_argument("--jobs", "-j", type=int, default=1,
                   help="grade this many submissions at a time, each in a process of its own (default: %(default)s)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="send the grading to this Dask scheduler's workers (see README: Grading on a cluster)")
    p.add_argument("--dask", action="store_true", help="a Dask LocalCluster of --jobs workers on this machine")
    p.add_argument("--force", action="store_true",
                   help="regrade submissions whose content is unchanged since they were graded")
    p.add_argument("--submission-timeout", type=float, metavar="SECONDS",
                   help="stop a submission's grading after this long; it is reported as failed, not recorded "
                        "(default: the --timeout of the kernel step, at least 300 s, plus 120 s)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar on stderr (default: when stderr is a terminal)")
    p.set_defaults(func=cmd_autograde)

    p = sub.add_parser("collect", help="unpack an LMS download (zip) into DIR/submitted/<student>/<lab>/")
    p.add_argument("lab", metavar="LAB")
    course_options(p, db=False)
    p.add_argument("--zip", required=True, metavar="FILE", help="the LMS's download of the submissions")
    p.add_argument("--format", choices=["canvas", "moodle", "plain"], default="plain",
                   help="canvas: <name>[_late]_<id>_<id>_<file>; moodle: <Full Name>_<id>_assignsubmission_file_/<file>; "
                        "plain: <student>/<file> (default: %(default)s)")
    p.add_argument("--max-mb", type=int, default=2048, help="refuse an archive larger than this uncompressed")
    p.set_defaults(func=cmd_collect, db=None)

    p = sub.add_parser("feedback", help="write HTML feedback for the autograded submissions of one lab")
    p.add_argument("lab", metavar="LAB")
    course_options(p)
    p.add_argument("--student", help="only this student")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("report", help="print the grade table from the gradebook")
    p.add_argument("lab", nargs="?", metavar="LAB", help="only this lab (default: every lab in the gradebook)")
    course_options(p)
    p.add_argument("--format", choices=["table", "csv"], default="table")
    p.add_argument("--per-test", action="store_true", help="one more column per autograded test")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("judge", help="grade one notebook with the judge alone and print the verdicts (for TAs)")
    p.add_argument("lab", metavar="LAB")
    p.add_argument("notebook", help="the submitted notebook")
    p.add_argument("--source", help="source notebook (default: labs/source/LAB/LAB.ipynb)")
    p.add_argument("--time-limit", type=float, default=300, help="seconds for the whole run (default 300)")
    p.add_argument("--memory-limit", type=int, default=4096, help="MB of heap for the child (default 4096)")
    p.set_defaults(func=cmd_judge)

    p = sub.add_parser("worker", help="a Dask worker for `autograde --scheduler` (this repository on its path)")
    p.add_argument("scheduler", metavar="tcp://HOST:PORT")
    p.add_argument("--nworkers", type=int, default=1, help="worker processes (each grades one submission at a time)")
    p.add_argument("--name", help="the worker's name in the scheduler")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", help="release, submit known submissions, autograde, feedback, report (a temporary course dir)")
    p.add_argument("--course-dir", help="use this folder instead of a new temporary one")
    kernel_options(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_venv_path()
    try:
        return args.func(args)
    except CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
