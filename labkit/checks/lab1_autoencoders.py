"""Self-checks of lab 1 (autoencoders and VAEs), one per graded function (graded for real by
``autograder/exercises/lab1_autoencoders.py``)."""
from __future__ import annotations

import torch

from .. import losses
from .common import as_tensor, assert_close, generator


def _linear_shapes(module) -> list[tuple[int, int]]:
    """The weight shapes of a module's Linear layers, sorted (the widths, whatever the registration order)."""
    return sorted(tuple(m.weight.shape) for m in module.modules() if isinstance(m, torch.nn.Linear))


def check_autoencoder(build_autoencoder) -> None:
    """The MLP autoencoder: .encoder 784-128-32-2, .decoder 2-32-128-784 ending in a sigmoid, and
    forward -> (reconstruction, z); widths are compared as sets, whatever order the layers were made in."""
    model = build_autoencoder()
    out = model(torch.rand(5, 1, 28, 28))
    if not (isinstance(out, tuple) and len(out) == 2):
        raise AssertionError("forward should return a pair (reconstruction, z).")
    recon, z = (as_tensor(t, "forward") for t in out)
    if recon.shape != (5, 784) or z.shape != (5, 2):
        raise AssertionError(f"for a (5, 1, 28, 28) batch expected shapes (5, 784) and (5, 2); "
                             f"got {tuple(recon.shape)} and {tuple(z.shape)}. Flatten the input first.")
    if recon.min() < 0 or recon.max() > 1:
        raise AssertionError("reconstructions should lie in [0, 1]: end the decoder with a sigmoid.")
    for part in ("encoder", "decoder"):
        if not isinstance(getattr(model, part, None), torch.nn.Module):
            raise AssertionError(f"the model has no .{part} module; the notebook calls model.encoder and model.decoder.")
    with torch.no_grad():
        codes = as_tensor(model.encoder(torch.rand(3, 784)), "model.encoder")
        images = as_tensor(model.decoder(torch.randn(3, 2)), "model.decoder")
    if codes.shape != (3, 2) or images.shape != (3, 784):
        raise AssertionError(f"model.encoder should map (3, 784) to (3, 2) and model.decoder (3, 2) to (3, 784); "
                             f"got {tuple(codes.shape)} and {tuple(images.shape)}.")
    for part, widths in (("encoder", [(128, 784), (32, 128), (2, 32)]), ("decoder", [(32, 2), (128, 32), (784, 128)])):
        got = _linear_shapes(getattr(model, part))
        if got != sorted(widths):
            raise AssertionError(f"model.{part}'s Linear weight shapes (sorted) are {got}; expected {sorted(widths)}.")
    print("autoencoder: shapes, encoder and decoder widths and output range look right")


def _backward_reaches(module, inputs: torch.Tensor, what: str) -> torch.Tensor:
    """module(inputs) in training mode, with a backward pass: checks gradients reach the input and every weight."""
    inputs = inputs.clone().requires_grad_()
    try:
        out = module.train()(inputs)
    except RuntimeError as err:  # mismatched sizes, typically
        raise AssertionError(f"{what} fails on a {tuple(inputs.shape)} batch ({err}). Work every size out from "
                             "image_size: the model must work for 28 and 32 px images.") from None
    as_tensor(out, what)
    if not out.requires_grad:
        raise AssertionError(f"{what} has no gradient: use torch operations only (no .detach(), numpy or no_grad).")
    out.sum().backward()
    unused = [name for name, p in module.named_parameters() if p.grad is None]
    if inputs.grad is None or not inputs.grad.abs().sum() > 0 or unused:
        raise AssertionError(f"gradients should reach the input and every parameter of {what}; "
                             f"none reached {unused or ['the input']}.")
    return out.detach()


def _has_conv(module) -> bool:
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules())


def check_conv_encoder(build_conv_encoder) -> None:
    """build_conv_encoder(in_channels, image_size, out_dim): (B, C, S, S) -> (B, out_dim) for S = 28 and 32."""
    for channels, size, out_dim in ((1, 28, 2), (3, 32, 4)):
        encoder = build_conv_encoder(channels, size, out_dim)
        if not _has_conv(encoder):
            raise AssertionError("the encoder has no convolution: use nn.Conv2d layers before the final nn.Linear.")
        z = _backward_reaches(encoder, torch.rand(4, channels, size, size), "the encoder")
        if z.shape != (4, out_dim):
            raise AssertionError(f"build_conv_encoder({channels}, {size}, {out_dim}) maps a (4, {channels}, {size}, "
                                 f"{size}) batch to {tuple(z.shape)}; expected (4, {out_dim}). Work out the flattened "
                                 "size from image_size, or pool to 1x1 (nn.AdaptiveAvgPool2d(1)).")
    print("conv encoder: shapes for 28 and 32 px images, convolutions, gradients look right")


def check_conv_decoder(build_conv_decoder) -> None:
    """build_conv_decoder(out_channels, image_size, latent_dim): (B, latent_dim) -> (B, C, S, S) in [0, 1]."""
    for channels, size, latent_dim in ((1, 28, 2), (3, 32, 3)):
        decoder = build_conv_decoder(channels, size, latent_dim)
        if not _has_conv(decoder):
            raise AssertionError("the decoder has no convolution: upsample with nn.ConvTranspose2d (or nn.Upsample "
                                 "and nn.Conv2d).")
        images = _backward_reaches(decoder, torch.randn(4, latent_dim), "the decoder")
        if images.shape != (4, channels, size, size):
            raise AssertionError(f"build_conv_decoder({channels}, {size}, {latent_dim}) maps (4, {latent_dim}) codes to "
                                 f"{tuple(images.shape)}; expected (4, {channels}, {size}, {size}).")
        if images.min() < 0 or images.max() > 1:
            raise AssertionError("decoded images should lie in [0, 1]: end the decoder with nn.Sigmoid().")
    print("conv decoder: shapes for 28 and 32 px images, output range, gradients look right")


def check_reparameterize(reparameterize, thorough: bool = False) -> None:
    """z = mu + exp(logvar / 2) * eps: right mean, right spread, gradients to mu and logvar."""
    g = generator(thorough)
    mu = torch.randn(1, 3, generator=g).repeat(20000, 1).requires_grad_()
    logvar = (torch.rand(1, 3, generator=g) * 2 - 1.5).repeat(20000, 1).requires_grad_()
    z = reparameterize(mu, logvar)
    z_ = as_tensor(z, "reparameterize")
    if z_.shape != mu.shape:
        raise AssertionError(f"z should have the shape of mu {tuple(mu.shape)}; got {tuple(z_.shape)}.")
    assert_close(z_.mean(0), mu[0].detach(), "mean of z", "z should be centred on mu.", rtol=0, atol=0.05)
    std = torch.exp(0.5 * logvar[0].detach())
    if not torch.allclose(z_.std(0), std, rtol=0.05):
        raise AssertionError(f"spread of z {z_.std(0).tolist()}, expected exp(logvar / 2) = {std.tolist()}. "
                             "Hint: logvar is the log of the variance; the standard deviation is exp(0.5 * logvar).")
    if not (isinstance(z, torch.Tensor) and z.requires_grad):
        raise AssertionError("no gradient reaches mu or logvar: build z from mu and logvar with torch operations "
                             "(no .detach(), numpy or torch.normal), with eps = torch.randn_like(mu).")
    z.sum().backward()
    if mu.grad is None or logvar.grad is None or logvar.grad.abs().sum() == 0:
        raise AssertionError("gradients must reach mu and logvar: sample eps separately (torch.randn_like) "
                             "and build z from mu and logvar.")
    print("reparameterize: mean, spread and gradients look right")


def _vae_inputs(g: torch.Generator, batch: int = 3, pixels: int = 12, latent: int = 2):
    x = torch.rand(batch, pixels, generator=g)
    recon = torch.rand(batch, pixels, generator=g) * 0.9 + 0.05
    return recon, x, torch.randn(batch, latent, generator=g), torch.randn(batch, latent, generator=g) * 0.5


def check_vae_loss(vae_loss, thorough: bool = False) -> None:
    """vae_loss(x_recon, x, mu, logvar): BCE summed over pixels and batch + KL summed over dims and batch."""
    g = generator(thorough)
    recon, x, mu, logvar = _vae_inputs(g)
    got = as_tensor(vae_loss(recon, x, mu, logvar), "vae_loss")
    if got.numel() != 1:
        raise AssertionError(f"vae_loss should return one number (a scalar tensor); got shape {tuple(got.shape)}.")
    zeros = torch.zeros_like(mu)
    bce_only = losses.vae_loss(recon, x, zeros, zeros)
    assert_close(as_tensor(vae_loss(recon, x, zeros, zeros), "vae_loss").reshape(()), bce_only, "loss at mu=0, logvar=0",
           "with mu = 0 and logvar = 0 the KL term is 0, so this is the BCE alone: sum it over pixels and batch "
           "(reduction='sum').")
    assert_close(got.reshape(()), losses.vae_loss(recon, x, mu, logvar), "vae_loss",
           "KL = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)), summed over latent dimensions and batch.")
    print("vae_loss: matches the reference (BCE and KL, summed)")


def check_interpolate(interpolate) -> None:
    """interpolate(z_start, z_end, num_steps): num_steps evenly spaced points, both ends included."""
    z0, z1 = torch.tensor([0.0, 2.0]), torch.tensor([4.0, -2.0])
    path = as_tensor(interpolate(z0, z1, 5), "interpolate")
    expected = torch.tensor([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0], [3.0, -1.0], [4.0, -2.0]])
    assert_close(path, expected, "interpolate(z0, z1, 5)", "include both ends: t = linspace(0, 1, num_steps), "
           "z = (1 - t) * z_start + t * z_end.")
    print("interpolate: evenly spaced, both ends included")


def check_cluster_latents(cluster_latents) -> None:
    """cluster_latents(z, num_clusters): one integer label per row, grouping well-separated blobs."""
    from sklearn.metrics import adjusted_rand_score

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(3).repeat_interleave(50)
    z = centres[truth] + torch.randn(150, 2, generator=g)
    labels = torch.as_tensor(cluster_latents(z, 3))
    if labels.shape != (150,):
        raise AssertionError(f"expected one label per row, shape (150,); got {tuple(labels.shape)}.")
    if labels.is_floating_point() or labels.min() < 0 or labels.max() >= 3:
        raise AssertionError(f"labels should be integers in [0, num_clusters) = [0, 3); got values from "
                             f"{labels.min().item()} to {labels.max().item()}.")
    ari = adjusted_rand_score(truth.numpy(), labels.numpy())
    if ari < 0.9:
        raise AssertionError(f"three well-separated blobs should be found (adjusted Rand index {ari:.2f} < 0.9).")
    print(f"cluster_latents: finds three separated blobs (adjusted Rand index {ari:.2f})")
