"""One generic fit loop and the thin wrappers the labs call: SimCLR, BYOL, VAE, AE, classifiers.

Data stay on the device as one tensor (uint8 images, or cached float features);
a batch is an index slice of it. ``fit`` knows nothing about the model: it is fed
a ``step(x, *rest) -> loss`` function. Losses are collected on the device and
copied to the host once per epoch (no ``.item()`` per step).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from . import config, losses
from .evaluation import FeaturesOf, extract_features, predict
from .images import image_scale, to_float
from .runtime import get_device


# ---------------------------------------------------------------------------- pinned helpers

@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Every target parameter becomes ``tau * target + (1 - tau) * online`` (in place).

    BatchNorm's running statistics (every floating-point buffer) follow the same moving
    average, so that the target in eval mode normalizes with statistics that belong to its
    averaged weights; integer buffers (``num_batches_tracked``) are copied from the online
    network. Forgetting the buffers (the seed's EMA) leaves them at their initial values
    whenever the target is used in eval mode.
    """
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o, 1.0 - tau)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        if t.is_floating_point():
            t.lerp_(o, 1.0 - tau)
        else:
            t.copy_(o)


def cosine_tau(step: int, total_steps: int, base: float = 0.996) -> float:
    """BYOL's target decay: ``1 - (1 - base) * (cos(pi * step / total_steps) + 1) / 2``.

    ``base`` at step 0, rising to 1 at the last step (Grill et al. 2020, section 3.2).
    """
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int = 1000, device=None) -> nn.Module:
    """Set every BatchNorm layer's running statistics to their average over ``images``; weights untouched.

    A freshly initialized ("random") encoder has running mean 0 and variance 1, so in
    eval mode its BatchNorm layers do nothing and its features can be tiny; calibrating
    gives it the statistics it would have after seeing the data. Returns the model in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    device, images = _prepare(model, images, device)
    scale = image_scale(images)  # once for all batches
    for batch in images.split(batch_size):
        model(to_float(batch, scale))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


# ---------------------------------------------------------------------------- the loop

def _batches(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """Index tensors of one shuffled epoch; drops a last partial batch unless it is the only one."""
    order = torch.randperm(n, generator=generator, device="cpu").to(device)
    if n <= batch_size:
        return [order]
    return list(order[: n - n % batch_size].split(batch_size))


def fit(params, step: Callable[..., torch.Tensor], data: Sequence[torch.Tensor], *, num_epochs: int,
        batch_size: int, lr: float = 1e-3, weight_decay: float = 0.0, seed: int | None = None,
        lr_schedule: str = "cosine", after_step: Callable[[int, int], None] | None = None,
        mixed_precision: bool = False, desc: str = "training", progress: bool | None = None) -> np.ndarray:
    """Adam over ``num_epochs`` passes through ``data``; the learning rate decays to 0 on a cosine
    (``lr_schedule="cosine"``) or stays at ``lr`` (``"constant"``).

    Args:
        params: the parameters to optimize.
        step: ``step(x, *rest) -> loss``; x is the batch of ``data[0]``, uint8 images converted by
            :func:`labkit.images.to_float` (0..255 or binary 0/1 -> [0, 1], (B, H, W) -> (B, 1, H, W)),
            anything else as it is; ``rest`` the same rows of the other tensors.
        data: tensors with the same first dimension, already on the training device.
        after_step: called as ``after_step(step_index, total_steps)`` after each update (BYOL's EMA).
        mixed_precision: run ``step`` under bf16 autocast on CUDA (ignored elsewhere). Only for
            steps whose losses are autocast-safe (labkit's losses compute in fp32; plain
            ``F.binary_cross_entropy`` is not, which is why this is off by default).
        progress: show a tqdm bar; default: at ``full`` scale only.

    Returns the loss of every step, (num_epochs * steps_per_epoch,) float32.
    """
    images, *rest = data
    device = images.device
    scale = image_scale(images) if images.dtype == torch.uint8 else 1.0  # once for all batches
    generator = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(2**31, (1,))))
    optimizer = torch.optim.Adam(list(params), lr=lr, weight_decay=weight_decay)
    total = num_epochs * max(1, len(images) // batch_size)  # steps; matches _batches
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {lr_schedule!r}")
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total, 1)) if lr_schedule == "cosine"
                else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0))
    use_bf16 = mixed_precision and device.type == "cuda"
    history, done = [], 0
    bar = tqdm(range(num_epochs), desc=desc, disable=config.quiet() if progress is None else not progress)
    for epoch in bar:
        epoch_losses = []
        for idx in _batches(len(images), batch_size, generator, device):
            x = to_float(images[idx], scale) if images.dtype == torch.uint8 else images[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = step(x, *(t[idx] for t in rest))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            done += 1
            if after_step is not None:
                after_step(done, total)
            epoch_losses.append(loss.detach().float())
        epoch_losses = torch.stack(epoch_losses).cpu().numpy()  # one host copy per epoch
        history.append(epoch_losses)
        if not np.isfinite(epoch_losses).all():
            raise FloatingPointError(f"{desc}: the loss became {epoch_losses[~np.isfinite(epoch_losses)][0]} in epoch "
                                     f"{epoch + 1}. Lower the learning rate (lr={lr}) or check the loss function.")
        bar.set_postfix(loss=f"{epoch_losses.mean():.4g}")
    return np.concatenate(history) if history else np.zeros(0, dtype=np.float32)


def _prepare(model: nn.Module | None, images: torch.Tensor, device) -> tuple[torch.device, torch.Tensor]:
    device = torch.device(device) if device is not None else get_device()
    if model is not None:
        model.to(device).train()
    if images.dim() == 3:  # (N, H, W) -> (N, 1, H, W)
        images = images.unsqueeze(1)
    return device, images.to(device)


def _augment_generator(seed: int | None, device) -> torch.Generator | None:
    return None if seed is None else torch.Generator(device=device).manual_seed(seed + 1)


# ---------------------------------------------------------------------------- self-supervised

def train_simclr(encoder: nn.Module, images: torch.Tensor, augment: Callable, *, projector: nn.Module | None = None,
                 num_epochs: int = 10, batch_size: int = 1000, lr: float = 1e-3, temperature: float = 0.5,
                 neg_pairs: int | float | str = "all", lr_schedule: str = "cosine", seed: int | None = None,
                 loss: Callable | None = None, precise_bn: bool = True, after_step: Callable[[int, int], None] | None = None,
                 device=None, progress: bool | None = None) -> tuple[nn.Module, np.ndarray]:
    """SimCLR: two augmented views per image, NT-Xent on ``projector(encoder(view))``.

    ``images``: (N, C, H, W) or (N, H, W) uint8 or float. ``projector=None`` puts the loss on
    the encoder features themselves (as the Neuromatch dSprites lab does). ``loss(z1, z2) -> scalar``
    replaces labkit's NT-Xent (a lab passes its students' own); ``temperature`` and ``neg_pairs``
    are then the loss's business and must be left at their defaults.

    ``precise_bn``: after training, recompute the encoder's BatchNorm statistics over ``images``
    (un-augmented, no labels) with the final weights, as :func:`calibrate_batchnorm` does. The
    running averages kept during training mix statistics of weights from the last steps and
    of augmented views; on dSprites they cost an earlier shipped encoder 7 points of linear-probe
    accuracy (84.8% against 91.9% after recalibration, same weights; README, The shipped dSprites encoders).
    ``after_step(step, total_steps)`` is called after every update, as by :func:`fit` (checkpoints, measurements).
    Returns the encoder (trained in place, eval mode) and the per-step losses.
    """
    if loss is not None and (temperature != 0.5 or neg_pairs != "all"):
        raise ValueError("With loss= given, set its temperature and negatives inside it (e.g. functools.partial); "
                         f"got temperature={temperature}, neg_pairs={neg_pairs!r} as well.")
    device, images = _prepare(encoder, images, device)
    model = nn.Sequential(encoder, projector.to(device)) if projector is not None else encoder
    gen = _augment_generator(seed, device)

    def step(x):
        x1, x2 = augment(x, generator=gen), augment(x, generator=gen)
        if loss is not None:
            return loss(model(x1), model(x2))
        return losses.contrastive_loss(model(x1), model(x2), temperature, neg_pairs, generator=gen)

    history = fit(model.parameters(), step, [images], num_epochs=num_epochs, batch_size=batch_size, lr=lr,
                  lr_schedule=lr_schedule, seed=seed, after_step=after_step, mixed_precision=True, desc="SimCLR",
                  progress=progress)
    if precise_bn:
        calibrate_batchnorm(encoder, images, device=device)
    return encoder.eval(), history


def collapse_monitor(z: torch.Tensor) -> torch.Tensor:
    """How spread out a batch of projections is: the standard deviation over the batch of the
    L2-normalized rows, averaged over the D dimensions and multiplied by sqrt(D).

    About 1 for rows spread evenly over the unit sphere, 0 when every image maps to the same
    point (a collapse). z (B, D) -> a 0-d tensor, on z's device (no host sync).
    """
    unit = nn.functional.normalize(z.detach().float(), dim=1)
    return unit.std(dim=0).mean() * math.sqrt(z.shape[1])


def byol_step(online: nn.Module, predictor: nn.Module, target: nn.Module, x1: torch.Tensor,
              x2: torch.Tensor) -> torch.Tensor:
    """The symmetric BYOL loss of two views x1, x2 (B, C, H, W) of the same images:
    ``byol_loss(p1, z2') + byol_loss(p2, z1')`` with p = predictor(online(x)), z' = target(x) under no_grad."""
    p1, p2 = predictor(online(x1)), predictor(online(x2))  # (B, D) each
    with torch.no_grad():
        z1, z2 = target(x1), target(x2)                    # (B, D), no graph: the target gets no gradient
    return losses.byol_loss(p1, z2) + losses.byol_loss(p2, z1)


def train_byol(encoder: nn.Module, images: torch.Tensor, augment: Callable | tuple[Callable, Callable], *,
               projector: nn.Module, predictor: nn.Module, num_epochs: int = 10, batch_size: int = 256,
               lr: float = 3e-4, base_tau: float = 0.996, tau_schedule: str = "cosine",
               step: Callable | None = None, update: Callable | None = None, schedule: Callable | None = None,
               seed: int | None = None, device=None, progress: bool | None = None,
               compile: bool = False) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """BYOL: the online network (encoder, projector, predictor) regresses an EMA target network.

    ``augment`` is one transform or a pair (view 1, view 2) for the paper's asymmetric views; both
    views of a step are drawn from the same batch of images. The target starts as a copy of the
    online encoder and projector, gets no gradient, and follows them after every step with
    ``update(target, online, tau)`` (default :func:`ema_update`) at ``tau = schedule(step,
    total_steps, base_tau)`` (default :func:`cosine_tau`; ``tau_schedule="constant"`` keeps
    ``base_tau``: ``base_tau=0`` makes the target a copy of the online network, an ablation).
    The target runs in train mode, as the online network does: its BatchNorm layers normalize each
    view with that batch's statistics. ``step(online, predictor, target, x1, x2) -> loss`` defaults
    to :func:`byol_step`; a lab passes its students' own functions. ``predictor=nn.Identity()`` is
    the no-predictor ablation. On CUDA: channels_last, bf16 autocast, optionally ``torch.compile``.

    Returns the online encoder (eval mode), the per-step losses and the per-step collapse monitor
    (:func:`collapse_monitor` of the online projections of view 1), both (steps,) float32.
    """
    device, images = _prepare(encoder, images, device)
    aug1, aug2 = augment if isinstance(augment, tuple) else (augment, augment)
    step = step or byol_step
    update = update or ema_update
    if tau_schedule not in ("cosine", "constant"):
        raise ValueError(f"tau_schedule must be 'cosine' or 'constant', got {tau_schedule!r}")
    schedule = schedule or (cosine_tau if tau_schedule == "cosine" else (lambda i, total, base: base))
    online = nn.Sequential(encoder, projector).to(device)
    predictor.to(device).train()
    if device.type == "cuda":
        online, predictor = online.to(memory_format=torch.channels_last), predictor.to(memory_format=torch.channels_last)
    target = copy.deepcopy(online).requires_grad_(False)
    gen = _augment_generator(seed, device)
    spreads: list[torch.Tensor] = []
    hook = projector.register_forward_hook(  # the first call of a step is view 1's online projection
        lambda module, args, z: spreads.append(collapse_monitor(z)) if len(spreads) < calls[0] else None)
    calls = [0]
    run_online, run_predictor, run_target = online, predictor, target
    if compile and device.type == "cuda":
        run_online, run_predictor, run_target = (torch.compile(m) for m in (online, predictor, target))

    def train_step(x):
        calls[0] += 1
        x1, x2 = aug1(x, generator=gen), aug2(x, generator=gen)
        if device.type == "cuda":
            x1, x2 = x1.contiguous(memory_format=torch.channels_last), x2.contiguous(memory_format=torch.channels_last)
        return step(run_online, run_predictor, run_target, x1, x2)

    def after_step(i, total):
        update(target, online, schedule(i, total, base_tau))

    params = [*online.parameters(), *predictor.parameters()]
    try:
        history = fit(params, train_step, [images], num_epochs=num_epochs, batch_size=batch_size, lr=lr, seed=seed,
                      after_step=after_step, mixed_precision=True, desc="BYOL", progress=progress)
    finally:
        hook.remove()
    monitor = torch.stack(spreads).cpu().numpy() if spreads else np.zeros(0, dtype=np.float32)
    return encoder.eval(), history, monitor


# ---------------------------------------------------------------------------- autoencoders

def train_autoencoder(model: nn.Module, images: torch.Tensor, *, num_epochs: int = 10, batch_size: int = 256,
                      lr: float = 1e-3, seed: int | None = None, device=None,
                      progress: bool | None = None) -> tuple[nn.Module, np.ndarray]:
    """Plain autoencoder with the mean squared error; ``model(x) -> (reconstruction, z)``."""
    device, images = _prepare(model, images, device)

    def step(x):
        recon, _ = model(x)
        return nn.functional.mse_loss(recon, x.flatten(1) if recon.dim() == 2 else x)

    history = fit(model.parameters(), step, [images], num_epochs=num_epochs, batch_size=batch_size, lr=lr,
                  seed=seed, desc="autoencoder", progress=progress)
    return model.eval(), history


def train_vae(model: nn.Module, images: torch.Tensor, *, num_epochs: int = 10, batch_size: int = 256,
              lr: float = 1e-3, beta: float = 1.0, logits: bool = False, seed: int | None = None, device=None,
              progress: bool | None = None) -> tuple[nn.Module, np.ndarray]:
    """VAE with :func:`labkit.losses.vae_loss`; ``model(x) -> (reconstruction, mu, logvar)``.

    ``logits=True`` when the decoder outputs logits (the dSprites decoder).
    The recorded loss is per image (the summed loss divided by the batch size).
    """
    device, images = _prepare(model, images, device)

    def step(x):
        recon, mu, logvar = model(x)
        target = x.flatten(1) if recon.dim() == 2 else x
        return losses.vae_loss(recon, target, mu, logvar, beta, logits=logits) / len(x)

    history = fit(model.parameters(), step, [images], num_epochs=num_epochs, batch_size=batch_size, lr=lr,
                  seed=seed, desc="VAE", progress=progress)
    return model.eval(), history



# ---------------------------------------------------------------------------- classifiers

def _images_and_labels(dataset, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of a dSprites-like dataset (``latents_classes``) or an (images, labels) pair."""
    if isinstance(dataset, (tuple, list)):
        images, labels = dataset
        return torch.as_tensor(images), torch.as_tensor(labels)
    if hasattr(dataset, "latents_classes"):
        from .datasets.dsprites import LATENT_NAMES

        if target not in LATENT_NAMES:
            raise ValueError(f"target must be one of {LATENT_NAMES}; got {target!r}.")
        return dataset.images, dataset.latents_classes[:, LATENT_NAMES.index(target)]
    raise TypeError(f"Expected a DSprites dataset or an (images, labels) pair; got {type(dataset).__name__}.")


def _indices(sampler) -> torch.Tensor:
    """The indices of a sampler with ``.indices``, or of an index sequence or tensor."""
    if isinstance(sampler, torch.Tensor):  # (a tensor's own .indices is a sparse-tensor method)
        return sampler.long()
    return torch.as_tensor(list(getattr(sampler, "indices", sampler)), dtype=torch.long)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Percentage of rows whose arg-max is the label."""
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


def _linear_head(in_features: int, num_classes: int, seed: int | None) -> nn.Linear:
    """A linear classifier; with a seed its initial weights come from it, not from the global RNG."""
    if seed is None:
        return nn.Linear(in_features, num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(in_features, num_classes)


def train_classifier(encoder: nn.Module | None, dataset, train_sampler, test_sampler, num_epochs: int = 10,
                     fraction_of_labels: float = 1.0, batch_size: int = 1000, freeze_features: bool = True,
                     subset_seed: int | None = None, *, target: str = "shape", lr: float = 1e-3,
                     seed: int | None = None, device=None, progress: bool | None = None, verbose: bool = False,
                     augment: Callable | None = None):
    """A linear classifier of one latent (default ``shape``) on an encoder's features.

    Args:
        encoder: a model with ``get_features(x)`` (or a plain module), or None for raw pixels.
        dataset: a :class:`labkit.datasets.dsprites.DSprites` or an ``(images, labels)`` pair.
        train_sampler, test_sampler: samplers with ``.indices`` (or index sequences).
        fraction_of_labels: train on this random fraction of the training indices (``subset_seed``).
        freeze_features: True: the encoder stays frozen (eval mode, BatchNorm statistics
            untouched); its features are computed once and the head trains on the cache.
            False: encoder and head train end to end (the supervised encoder); afterwards the
            encoder's BatchNorm statistics are recomputed over the training images.
        seed: the classifier's initial weights and the batch order (None: drawn from the global RNG).
        augment: with ``freeze_features=False``, a transform ``augment(x, generator=None)`` applied to every
            training batch (a fresh draw per step; e.g. a crop and flip); the test images are never augmented.

    Returns ``(classifier, loss_array, train_acc, test_acc)``, accuracies in percent.
    """
    if not 0.0 < fraction_of_labels <= 1.0:
        raise ValueError(f"fraction_of_labels must be in (0, 1]; got {fraction_of_labels}.")
    images, labels = _images_and_labels(dataset, target)
    device, images = _prepare(None, images, device)
    labels = labels.to(device)
    train_idx, test_idx = _indices(train_sampler), _indices(test_sampler)
    if fraction_of_labels < 1.0:
        keep = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(subset_seed or 0))
        train_idx = train_idx[keep[: max(1, round(fraction_of_labels * len(train_idx)))]]
    train_idx, test_idx = train_idx.to(device), test_idx.to(device)
    num_classes = int(labels.max()) + 1

    if freeze_features or encoder is None:
        # features of the images in use only, computed once; the encoder stays frozen
        train_feats, test_feats = (extract_features(encoder, images[idx], device=device) for idx in (train_idx, test_idx))
        classifier = _linear_head(train_feats.shape[1], num_classes, seed).to(device)
        history = fit(classifier.parameters(), lambda h, y: nn.functional.cross_entropy(classifier(h), y),
                      [train_feats, labels[train_idx]], num_epochs=num_epochs, batch_size=batch_size, lr=lr,
                      seed=seed, desc="classifier", progress=progress)
        with torch.no_grad():
            train_acc = accuracy(classifier(train_feats), labels[train_idx])
            test_acc = accuracy(classifier(test_feats), labels[test_idx])
    else:
        encoder.to(device).train()
        features = FeaturesOf(encoder)
        width = predict(features, images[:2], device=device).shape[1]
        classifier = _linear_head(width, num_classes, seed).to(device)
        model = nn.Sequential(features, classifier)
        gen = _augment_generator(seed, device)
        history = fit(model.parameters(),
                      lambda x, y: nn.functional.cross_entropy(model(augment(x, generator=gen) if augment else x), y),
                      [images[train_idx], labels[train_idx]], num_epochs=num_epochs, batch_size=batch_size, lr=lr,
                      seed=seed, mixed_precision=True, desc="supervised", progress=progress)
        # Short runs leave BatchNorm's running statistics behind the fast-moving weights (eval-mode accuracy
        # far below train-mode); recompute them over the training images with the final weights ("precise BN").
        calibrate_batchnorm(encoder, images[train_idx], device=device)
        model.eval()  # the encoder with it
        train_acc = accuracy(predict(model, images[train_idx], device=device), labels[train_idx])
        test_acc = accuracy(predict(model, images[test_idx], device=device), labels[test_idx])
    if verbose:
        print(f"{target} accuracy: train {train_acc:.1f}%, test {test_acc:.1f}%")
    return classifier, history, train_acc, test_acc


def epochs_for_fraction(num_epochs: int, fraction: float) -> int:
    """Epochs for a ``fraction`` of the labels: ``num_epochs / sqrt(fraction)``, so small sets still get updates."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction_of_labels must be in (0, 1]; got {fraction}.")
    return max(1, round(num_epochs / math.sqrt(fraction)))


def train_by_fraction(encoders: dict[str, nn.Module | None], dataset, train_sampler, test_sampler,
                      fractions=(0.05, 0.1, 0.2, 0.4, 0.75, 1.0), num_epochs: int = 10, *,
                      freeze_features: bool = True, subset_seed: int = 0, **kwargs) -> dict[str, list[float]]:
    """Test accuracy of a classifier per encoder and labelled fraction.

    Epochs are scaled by 1 / sqrt(fraction) so that small fractions still get enough updates
    (as in the Neuromatch lesson). With ``freeze_features=False`` every fraction trains its
    own copy of the encoder as given (so pass an untrained one), end to end.
    Returns ``{name: [test accuracy per fraction]}``.
    """
    results = {}
    for name, encoder in encoders.items():
        results[name] = []
        for f in fractions:
            epochs = epochs_for_fraction(num_epochs, f)
            model = encoder if freeze_features or encoder is None else copy.deepcopy(encoder)
            *_, test_acc = train_classifier(model, dataset, train_sampler, test_sampler, epochs,
                                            fraction_of_labels=f, freeze_features=freeze_features,
                                            subset_seed=subset_seed, **kwargs)
            results[name].append(test_acc)
    return results
