"""labkit: the helper library of the representation-learning labs.

Notebooks call module-qualified names, e.g. ``losses.contrastive_loss`` or
``rsm.compute_rsm``. Importing labkit does no work: call ``labkit.setup()``.
"""
from . import augment, config, evaluation, images, losses, models, plots, rsm, training
from .runtime import get_device, setup

__all__ = ["augment", "config", "evaluation", "images", "losses", "models", "plots", "rsm", "training", "setup",
           "get_device"]
__version__ = "0.1.0"
