"""Lab 1's self-checks and judge look at behaviour, not at how a model was assembled.

Each declared solution of a lab-1 exercise (autograder/exercises/lab1_autoencoders.py: the decoder built
before the encoder, reversed containers, other convolutional designs) passes the student-visible self-check
too, not only the judge (tests/test_exercises.py grades them); and labkit's own convolutional parts, which
the notebook's solution does not copy, pass the conv self-checks.
"""
from __future__ import annotations

import contextlib
import io

import pytest
import torch

from autograder import exercises
from autograder.course import Labs
from autograder.exercises.kit import examples
from labkit import models
from labkit.checks import lab1_autoencoders as checks

LAB = "lab1_autoencoders"
SOLUTIONS = [(ex, s) for ex in exercises.load(LAB).values() for s in ex.solutions]


@pytest.mark.parametrize("exercise, solution", SOLUTIONS, ids=lambda v: getattr(v, "label", None) or v.grade_id)
def test_the_self_check_accepts_every_declared_solution(exercise, solution):
    source = Labs().source(LAB)
    scope = examples.namespace(source, {examples.solution_cell_of(exercise, source): solution.code})
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(examples.visible_test(exercise, source), scope)
    assert printed.getvalue().strip()


def test_the_conv_self_checks_accept_labkits_parts():
    def decoder(channels, size, latent_dim):
        full = models.ConvAutoencoder(channels, size, latent_dim=latent_dim)
        return torch.nn.Sequential(full.fc, full.decoder)

    with contextlib.redirect_stdout(io.StringIO()):
        checks.check_conv_encoder(lambda channels, size, out_dim: models.ConvEncoder(channels, out_dim))
        checks.check_conv_decoder(decoder)


def test_the_autoencoder_judge_ignores_registration_order():
    exercise = exercises.load(LAB)["autoencoder_test"]
    decoder_first = next(s for s in exercise.solutions if "decoder registered before" in s.label)
    score, notes = examples.grade(exercise, Labs().source(LAB), decoder_first, seed=0)
    assert score == pytest.approx(1.0), notes
