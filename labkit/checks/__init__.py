"""Self-checks students run on their own answers in the labs: one module per lab, as in ``autograder/exercises/``.

A lab imports its own, ``from labkit.checks import lab1_autoencoders as checks``.
Each ``check_*`` calls the student's function on a small example, compares it with
labkit's reference or a known property, prints one line when it looks right and
raises ``AssertionError`` with a hint when it does not. They are for learning, not
grading: the autograder grades in a separate, clean process with fresh inputs.
:mod:`.fixtures` holds the seeded data and encoders the lab-4 checks share with
the autograder's exercises.
"""
