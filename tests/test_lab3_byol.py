"""Lab 3 (BYOL): labkit's BYOL pieces against independent formulations, and the lab graded end to end.

- ``ema_update`` moves parameters AND BatchNorm buffers; ``collapse_monitor`` reads 0 for a collapse and about 1
  for spread projections; ``byol_step`` is the symmetric loss with no gradient into the target;
- ``byol_augment`` passes the lab's own statistical checks of Table 6 (the ones that grade students);
- ``train_byol`` runs the students' functions, records the monitor, and its ablations (no predictor, tau = 0) run;
- the seed's BYOL, pasted as the students' answers, scores at most a third of each exercise;
- the demo's students (perfect, untouched, the seed's mistakes) and the hostile examples through the real judge.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from autograder import exercises
from autograder.exercises import lab3_byol as graded
from autograder.exercises.kit import examples
from autograder.course import Labs
from labkit import augment, losses, models, training

from tests.test_grading_e2e import _auto, _demo_course, _expected, _hostile_students, _points

LAB3 = "lab3_byol"


# ---------------------------------------------------------------------------- labkit's references

def _bn_net(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].num_batches_tracked.fill_(seed)
    return net


def test_ema_update_moves_buffers_too():
    target, online = _bn_net(1), _bn_net(2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    training.ema_update(target, online, 0.75)
    for name, value in target.state_dict().items():
        want = online.state_dict()[name] if not value.is_floating_point() else 0.75 * before[name] + 0.25 * online.state_dict()[name]
        assert torch.allclose(value.float(), want.float(), atol=1e-6), name


def test_collapse_monitor_reads_zero_for_one_point_and_one_for_a_spread():
    assert training.collapse_monitor(torch.ones(64, 16) * torch.randn(1, 16)).item() == pytest.approx(0, abs=1e-6)
    spread = training.collapse_monitor(torch.randn(20_000, 32)).item()
    assert spread == pytest.approx(1.0, abs=0.03)
    assert training.collapse_monitor(torch.randn(20_000, 32) * 100).item() == pytest.approx(spread, abs=1e-3)


def test_byol_step_is_symmetric_and_keeps_the_target_out_of_the_graph():
    torch.manual_seed(0)
    online, predictor = nn.Sequential(nn.Flatten(), nn.Linear(12, 6)), nn.Linear(6, 6)
    target = copy.deepcopy(online)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(torch.randn_like(p))
    x1, x2 = torch.rand(5, 3, 2, 2), torch.rand(5, 3, 2, 2)
    loss = training.byol_step(online, predictor, target, x1, x2)
    loop = 0.0
    for a, b in ((x1, x2), (x2, x1)):  # the paper's two terms, row by row
        for i in range(len(a)):
            p, z = predictor(online(a[i:i + 1]))[0], target(b[i:i + 1])[0]
            loop += (2 - 2 * torch.dot(p, z) / (p.norm() * z.norm())).item() / len(a)
    assert loss.item() == pytest.approx(loop, rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in target.parameters())
    assert all(p.grad is not None for p in [*online.parameters(), *predictor.parameters()])


def test_resnet18_width_keeps_the_blocks():
    full, small = models.ResNet18Encoder(small_images=False), models.ResNet18Encoder(small_images=False, width=8)
    assert full.feature_dim == 512 and small.feature_dim == 64
    assert small(torch.rand(2, 3, 96, 96)).shape == (2, 64)
    kinds = lambda m: [type(x).__name__ for x in m.modules()]  # noqa: E731
    assert kinds(full) == kinds(small)
    assert sum(p.numel() for p in full.parameters()) == 11_176_512  # torchvision's ResNet-18 without fc


def test_labkits_byol_augment_passes_the_labs_table_6_checks():
    score, notes = examples.grade_in_process(graded.AUGMENT, augment.byol_augment, seed=3)
    assert score == 1.0, notes


def test_train_byol_runs_the_students_functions_and_records_the_monitor():
    source = Labs().source(LAB3)
    scope = examples.namespace(source)
    calls = {"step": 0, "update": 0, "schedule": 0}

    def counted(name):
        def run(*args, **kwargs):
            calls[name] += 1
            return scope[{"step": "byol_step", "update": "update_target", "schedule": "cosine_tau"}[name]](*args, **kwargs)
        return run

    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    views = (scope["byol_augment"](32, 1), scope["byol_augment"](32, 2))
    torch.manual_seed(0)
    encoder = models.ResNet18Encoder(small_images=False, width=8)
    _, loss, monitor = training.train_byol(encoder, images, views, projector=models.mlp(64, 32, 16),
                                           predictor=models.mlp(16, 32, 16), num_epochs=2, batch_size=32,
                                           step=counted("step"), update=counted("update"), schedule=counted("schedule"),
                                           seed=0, device="cpu")
    assert calls == {"step": 4, "update": 4, "schedule": 4}
    assert loss.shape == monitor.shape == (4,) and np.all(np.isfinite(loss)) and np.all((monitor > 0) & (monitor < 2))
    for predictor, kwargs in ((nn.Identity(), {}), (models.mlp(16, 32, 16), dict(base_tau=0.0, tau_schedule="constant"))):
        _, loss, monitor = training.train_byol(models.ResNet18Encoder(small_images=False, width=8), images, views,
                                               projector=models.mlp(64, 32, 16), predictor=predictor, num_epochs=1,
                                               batch_size=32, seed=0, device="cpu", **kwargs)
        assert loss.shape == monitor.shape == (2,)


def test_train_classifier_augments_only_the_training_batches():
    seen = []

    def spy(x, generator=None):
        seen.append(len(x))
        return x.flip(-1)

    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8)
    labels = torch.arange(40) % 2
    training.train_classifier(models.ConvEncoder(feature_dim=8, width=4), (images, labels), range(30), range(30, 40),
                              num_epochs=1, batch_size=10, freeze_features=False, augment=spy, device="cpu")
    assert seen == [10, 10, 10]


# ---------------------------------------------------------------------------- the seed as a student

SEED_ANSWERS = {  # seed 003's code, in the exercises' signatures
    "byol_loss": "def byol_loss(p, z):\n    return nn.functional.mse_loss(p, z)\n",
    "update_target": """\
def update_target(target, online, tau):
    for online_params, target_params in zip(online.parameters(), target.parameters()):
        target_params.data = tau * target_params.data + (1 - tau) * online_params.data
""",
    "byol_step": """\
def byol_step(online, predictor, target, x1, x2):
    z1, z2 = online(x1), online(x2)
    p1, p2 = predictor(z1), predictor(z2)
    z2 = z2.detach()
    p2 = p2.detach()
    return 0.5 * (nn.functional.mse_loss(p1, z2) + nn.functional.mse_loss(p2, z1))
""",
    "byol_augment": """\
def byol_augment(size, view=1):
    return augment.Compose([
        augment.RandomResizedCrop(size, scale=(0.2, 1.0)),
        augment.RandomHorizontalFlip(),
        augment.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8),
        augment.RandomGrayscale(0.2),
        augment.GaussianBlur(int(0.1 * size) // 2 * 2 + 1, sigma=(0.1, 2.0), p=0.5),
    ])
""",
}


# The most each may earn: the bound of a third for the step; the seed's EMA is right but for the buffers.
SEED_LIMITS = {"byol_loss": 1 / 3, "byol_augment": 1 / 3, "byol_step": 1 / 3, "update_target": 1.25 / 2}


@pytest.mark.parametrize("function", sorted(SEED_ANSWERS))
def test_the_seeds_byol_scores_at_most_its_limit(function):
    exercise = next(ex for ex in exercises.load(LAB3).values() if ex.function == function)
    answer = examples.Example("seed 003", SEED_ANSWERS[function], share=0.0)
    score, notes = examples.grade(exercise, Labs().source(LAB3), answer, seed=0)
    assert score <= SEED_LIMITS[function] + 1e-9, notes
    if function == "byol_step":
        assert any("never enters the loss" in note for note in notes), notes


# ---------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def lab3(tmp_path_factory):
    return _demo_course(tmp_path_factory, LAB3, forger=False)


def test_lab3_scores_from_the_real_judge(lab3):
    """The demo's mistakes student repeats the seed's bugs (unnormalized MSE, identical views, EMA without the
    BatchNorm buffers, a step without the target); each hostile answer stays under its limit."""
    auto, full = _auto(lab3, LAB3), _points(LAB3)
    assert auto["perfect"] == full
    assert auto["untouched"] == dict.fromkeys(full, 0.0)
    assert auto["mistakes"] == pytest.approx(_expected(LAB3, "mistakes"), abs=0.01)
    assert 0 < sum(auto["mistakes"].values()) < sum(full.values())
    assert auto["mistakes"]["byol_step_test"] <= full["byol_step_test"] / 3  # the seed's own step
    for student in _hostile_students(LAB3):
        assert all(auto[student][gid] <= limit + 1e-9 for gid, limit in _expected(LAB3, student).items()), student
