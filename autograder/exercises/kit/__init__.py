"""The authoring kit: what a TA writes graded exercises with (see ``autograder/exercises/README.md``).

- :class:`Exercise`, :class:`Example`, :class:`Check`: the records (:mod:`.record`);
- the weighted checks, run in the clean parent: :func:`matches`, :func:`same`,
  :func:`holds`, :func:`in_range`, :func:`finite`, :func:`all_pass`, and :func:`varies`
  for a gate (an answer failing an exercise's gate earns nothing), with
  :func:`close` and :func:`describe_shape` for hand-written ones (:mod:`.checks`);
- the probe helpers, run in the scoring child: :func:`tensor`, :func:`to_numpy`,
  :func:`scalar`, :func:`grad_of` (:mod:`.probing`);
- :class:`Evidence` and :class:`Missing`, the engine's view of a graded call.
"""
from ...judge.evidence import Evidence, Missing
from .checks import all_pass, close, describe_shape, finite, holds, in_range, matches, same, varies
from .probing import grad_of, scalar, tensor, to_numpy
from .record import Check, Example, Exercise

__all__ = ["Exercise", "Example", "Check", "Evidence", "Missing", "matches", "same", "holds", "in_range", "finite",
           "varies", "all_pass", "close", "describe_shape", "tensor", "to_numpy", "scalar", "grad_of"]
