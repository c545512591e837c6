"""judge_notebook: from a submitted notebook to one Verdict per autograder test cell.

1. Read the source notebook (points, cells) and the submission (defensively).
2. Build the child's script (:mod:`.notebook`) and draw fresh inputs per exercise.
3. Run the scoring child (:mod:`.scoring_jail`): student cells, then the probes; read back arrays.
4. Here, in the clean process: delegation checks, then each exercise's weighted checks.

The engine knows no lab: the caller hands it the exercises (objects shaped like
:class:`.evidence.GradedExercise`) and names the module the child imports to find
their probes (a module with a list ``EXERCISES``).
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Sequence

import numpy as np

from .verdicts import Isolation, Verdict
from .delegation import find_delegation
from .evidence import Evidence, GradedExercise, Missing
from .notebook import (Script, Source, SubmissionError, build_script, read_source, scoring_cells,
                       submitted_cells)
from .scoring_jail import ChildRun, Limits, ScoringJail


def judge_notebook(notebook: Path | str, exercises: Sequence[GradedExercise], *, module: str, source: Path | str,
                   packages: Sequence[str] = (), hide: Sequence[Path] = (), withheld: Sequence[str] = (),
                   experiments: Sequence[str] = (), time_limit_s: float = 300,
                   memory_limit_mb: int = 4096) -> tuple[dict[str, Verdict], Isolation]:
    """Grade ``notebook``: a verdict per autograder test cell of ``source``, the instructor's notebook.

    ``exercises`` grade the test cells they name (by grade_id); the child imports
    ``module`` (and gets a copy of ``packages``, e.g. ``("labkit",)``) to find their
    probes. The points of each test cell come from ``source``, never from the
    submission. ``hide``: folders the child must not see should its bound folders
    hold them. ``withheld``: glob patterns of files left out of the child's copy of
    ``packages`` (e.g. shipped weights); the references the exercises forbid are
    stubs there. Never raises for a bad submission: what could not be verified
    scores zero, with a message.
    """
    notebook, source = Path(notebook), Path(source)
    src = read_source(source)
    exercises = {ex.grade_id: ex for ex in exercises}
    jail = ScoringJail(limits=Limits(time_s=time_limit_s, memory_mb=memory_limit_mb))
    isolation = jail.isolation()
    try:
        script = build_script(src, submitted_cells(notebook))
    except SubmissionError as err:
        return {gid: Verdict(gid, 0.0, points, [f"Not graded: {err}."]) for gid, points in src.tests.items()}, isolation

    graded = [exercises[gid] for gid in src.tests if gid in exercises]
    rng = np.random.default_rng(secrets.randbits(128))  # fresh inputs: answers hard-coded for visible ones fail
    cases = {ex.grade_id: ex.cases(rng) for ex in graded}
    inputs = {f"{gid}:{case}:{arg}": array for gid, by_case in cases.items() for case, args in by_case.items()
              for arg, array in args.items() if not arg.startswith("_")}  # "_..." stays here (e.g. true labels)
    plan = {"module": module, "cells": scoring_cells(script, experiments)[0],
            "exercises": [{"grade_id": ex.grade_id, "function": ex.function, "cases": list(cases[ex.grade_id])}
                          for ex in graded],
            "tripwires": sorted({reference for ex in graded for reference in ex.forbidden})}
    packages = (module, *packages)  # a module brings its package
    run = (jail.run(plan, inputs, notebook.parent, notebook.name, packages, (source.parent, *hide), tuple(withheld))
           if graded else ChildRun())

    verdicts = {}
    for gid, points in src.tests.items():
        if gid in exercises:
            verdicts[gid] = _verdict(exercises[gid], points, cases[gid], run, script, src, time_limit_s)
        else:
            verdicts[gid] = Verdict(gid, 0.0, points, ["No automatic judge is registered for this test cell; "
                                                       "your instructor will grade it."])
    if verdicts and script.notes:
        next(iter(verdicts.values())).messages.extend(f"Notebook: {note}." for note in script.notes)
    return verdicts, isolation


def _points(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _not_reached(run: ChildRun, function: str, time_limit_s: float) -> str:
    where = run.status.get("progress") or "start-up"
    if run.timed_out:
        why = f"the notebook's code ran past the time limit of {time_limit_s:.0f} s (an infinite loop?)"
    elif run.returncode is not None and run.returncode >= 128:
        signal_number = run.returncode - 128
        why = {9: "the grading process was killed (signal 9: the memory limit, or the code killed its own process)",
               24: "the grading process ran out of CPU time"}.get(
            signal_number, f"the grading process was killed by signal {signal_number}")
    elif run.returncode is not None:
        why = f"the grading process exited with code {run.returncode} before the end (os._exit in the code?)"
    else:
        why = "the grading process stopped early"
    return f"{function} could not be checked: {why}, while running {where}."


def _verdict(ex: GradedExercise, points: float, cases: dict, run: ChildRun, script: Script, src: Source,
             time_limit_s: float) -> Verdict:
    fn, gid = ex.function, ex.grade_id
    verdict = Verdict(gid, 0.0, points)
    say = verdict.messages.append
    cell = src.defined_in.get(fn)
    if cell in script.deleted:
        say(f"Cell {cell} was deleted from the notebook, so {fn} could only come from other cells.")
    if cell in script.duplicates:
        say(f"Cell {cell} appears more than once; only the first copy was run.")
    if gid in script.missing_tests:
        say(f"The test cell {gid} was deleted; it was graded from the original anyway.")
    if gid in script.duplicates:
        say(f"The test cell {gid} appears more than once; it was graded once.")
    cell_error = run.status.get("cells", {}).get(cell) if cell else None

    record = run.status.get("exercises", {}).get(gid)
    found = find_delegation(script.student_cells, fn, ex.forbidden)
    found += [f"{fn} called labkit's reference {ref} while being graded instead of implementing it"
              for ref in (record or {}).get("calls", [])
              if ref in ex.forbidden and not any(ref in message for message in found)]
    if found:
        verdict.messages.extend(f"{message}: 0 points for this exercise." for message in found)
        return verdict
    if record is None:
        say(_not_reached(run, fn, time_limit_s))
        return verdict
    if not record["defined"]:
        say(f"{fn} is not defined" + (f": cell {cell} raised {cell_error}." if cell_error else "."))
        return verdict
    errors = record["errors"]
    if errors and all(case in errors for case in cases):
        first = next(iter(errors.values()))
        say(f"{fn} failed on every input: {first}" if len(set(errors.values())) == 1
            else f"{fn} failed on every input, e.g. {first}")
        return verdict

    verdict.score, messages = score_checks(ex, points, Evidence(fn, cases, run.outputs.get(gid, {}), errors))
    verdict.messages.extend(messages)
    if cell_error and verdict.score < points:
        say(f"Cell {cell} raised {cell_error}.")
    return verdict


def _run(check, evidence: Evidence) -> str | None:
    try:
        return check.run(evidence)
    except Missing as missing:
        return str(missing)
    except Exception as err:  # an output of an unexpected shape or type
        return f"its output could not be checked ({type(err).__name__})"


def score_checks(ex: GradedExercise, points: float, evidence: Evidence) -> tuple[float, list[str]]:
    """Points earned by the weighted checks, and a message per failed check with the points it cost.

    An exercise's ``gate`` (when it has one) comes first: an answer that fails it (one that does not
    depend on its inputs as the task does: a constant, an identity, an echo, noise, NaN) earns nothing,
    whatever properties it happens to have, so that no degenerate answer scores above an honest one.
    """
    fn = ex.function
    gate = getattr(ex, "gate", None)
    if gate is not None:
        problem = _run(gate, evidence)
        if problem is not None:
            return 0.0, [f"{'' if problem.startswith(fn) else fn + ': '}{problem}; no partial credit for an answer "
                         f"that does not depend on its inputs (-{_points(points)} of {_points(points)})"]
    earned, lost = 0.0, {}
    for check in ex.checks:
        problem = _run(check, evidence)
        if problem is None:
            earned += check.weight
        else:
            lost[problem] = lost.get(problem, 0.0) + check.weight
    total = ex.total_weight
    messages = [f"{'' if problem.startswith(fn) else fn + ': '}{problem} "
                f"(-{_points(points * weight / total)} of {_points(points)})" for problem, weight in lost.items()]
    if not lost:
        messages.append(f"{fn}: all {len(ex.checks)} checks passed on fresh inputs.")
    return (round(points * earned / total, 4) if total else 0.0), messages


def grade_in_process(ex: GradedExercise, function, points: float = 1.0, seed: int | None = None) -> tuple[float, list[str]]:
    """Grade a TRUSTED ``function`` in this process: for testing exercise definitions, never for submissions."""
    cases = ex.cases(np.random.default_rng(seed))
    outputs, errors = {}, {}
    for case, args in cases.items():
        try:
            outputs[case] = ex.probe(function, {k: v for k, v in args.items() if not k.startswith("_")})
        except Exception as err:
            errors[case] = f"{type(err).__name__}: {err}"
    return score_checks(ex, points, Evidence(ex.function, cases, outputs, errors))
