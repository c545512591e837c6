"""Autograde wall clock per submission: today's serial path against the batch path, same batch, one run.

A batch of lab-4 submissions cycling through the demo's kinds (perfect, mistakes, untouched, hostile, and
"mixed": the perfect notebook with half of the mistakes) is graded

- serially, the way autograde worked before issue 15 (``--jobs 1``, nbgrader's kernel step for the feedback
  outputs, the scoring child running every cell of the notebook: AUTOGRADER_ALL_CELLS=1; its one grading process
  at a time is forked from a zygote too, as every grading process now is), and
- with the batch path (``--jobs N`` grading processes forked from a warmed zygote; ``--no-execute`` by
  default, since the kernel step only makes feedback outputs: ``--execute`` keeps it; the scoring child skipping
  the lab's ``EXPERIMENTS`` cells that nothing graded reads),

each in a fresh course directory; the scores read back from both gradebooks must be identical. Prints
seconds per submission, the ratio and the machine's load average (the CPUs may be shared).

    python benchmarks/bench_autograde.py --num 40 --jobs 2
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAB = "lab4_representations"


def build(root: Path, num: int):
    import nbformat

    from autograder.course import Course, Labs
    from autograder.demo import hostile, mistake_submissions, perfect, submit, with_cells

    labs = Labs()
    course = Course(root, labs=labs)
    release_nb = nbformat.read(course.prepare(LAB), as_version=4)
    good = perfect(nbformat.read(labs.source(LAB), as_version=4), release_nb)
    mistakes = mistake_submissions(labs, LAB)["mistakes"]
    half = dict(list(mistakes.items())[: max(1, len(mistakes) // 2)])
    kinds = {"perfect": good, "mistakes": with_cells(good, mistakes), "untouched": release_nb,
             "hostile": hostile(release_nb), "mixed": with_cells(good, half)}
    names = list(kinds)
    for i in range(num):
        kind = names[i % len(names)]
        submit(course, LAB, f"{kind}{i:03d}", kinds[kind])
    return course


def scores(course) -> dict:
    with course.gradebook() as gb:
        return {sub.student_id: {g.name: g.auto_score for g in gb.find_submission_notebook(LAB, LAB, sub.student_id).grades}
                for sub in gb.find_assignment(LAB).submissions}


def run(num: int, jobs: int, execute_new: bool) -> None:
    from autograder.course import use_venv_path
    from autograder.grading import autograde

    use_venv_path()
    os.environ.setdefault("LABKIT_SITE", "offline")
    quiet = lambda line: None  # noqa: E731
    timings, books = {}, {}
    for label, kwargs in (("serial (jobs 1, kernel step, judge runs every cell)", {"jobs": 1, "execute": True}),
                          (f"batch (jobs {jobs}, {'kernel step' if execute_new else 'no kernel step'})",
                           {"jobs": jobs, "execute": execute_new})):
        course = build(Path(tempfile.mkdtemp(prefix="bench-autograde-")), num)
        os.environ["AUTOGRADER_ALL_CELLS"] = "1" if kwargs["jobs"] == 1 else "0"  # today's judge, then the new one
        load = os.getloadavg()[0]
        start = time.monotonic()
        results = autograde(course, LAB, out=quiet, **kwargs)
        seconds = time.monotonic() - start
        books[label] = scores(course)
        phases: dict[str, float] = {}
        for r in results:
            for phase, s in r.breakdown.items():
                phases[phase] = phases.get(phase, 0.0) + s
        timings[label] = seconds
        print(f"{label}: {seconds:.1f} s for {num} submissions = {seconds / num:.1f} s per submission "
              f"(load average {load:.2f} before, {os.getloadavg()[0]:.2f} after); per submission, "
              + ", ".join(f"{p} {s / num:.1f} s" for p, s in phases.items()))
    (a, ta), (b, tb) = timings.items()
    same = books[a].keys() == books[b].keys() and all(
        (x is None) == (y is None) and (x is None or abs(x - y) <= 0.01)  # the judge draws fresh inputs per run
        for s in books[a] for x, y in ((books[a][s][c], books[b][s].get(c)) for c in books[a][s]))
    print(f"ratio: x{ta / tb:.2f} faster; same scores in both gradebooks (to 0.01 a cell): {same}")
    if not same:
        raise SystemExit("the two paths gave different scores")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--execute", action="store_true", help="keep nbgrader's kernel step in the batch path")
    args = parser.parse_args()
    run(args.num, args.jobs, args.execute)
