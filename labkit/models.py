"""Networks used by the labs: encoders, decoders, autoencoders, VAEs and SSL heads.

Naming follows the labs: ``h`` encoder features, ``z`` latent or projection,
``p`` prediction. Every encoder has ``feature_dim`` and ``get_features(x)``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

# torchvision is imported where the ResNet-18 is built, not here: it takes about 2 s to import (it pulls in
# torch.fx and sympy), and every grading process and scoring child imports labkit, once per submission.


def _dense(in_dim: int, out_dim: int) -> nn.Sequential:
    """Linear -> ReLU -> BatchNorm without affine parameters, the Neuromatch block."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.BatchNorm1d(out_dim, affine=False))


class DSpritesEncoder(nn.Module):
    """The Neuromatch dSprites encoder "core": (B, 1, 64, 64) in [0, 1] -> (B, 84) features.

    Two conv blocks (1->6->16 channels, kernel 5, ReLU, 2x2 average pool, BatchNorm)
    then three dense blocks 2704 -> 120 -> 84 -> 84. About 344k parameters.
    With ``vae=True`` a parallel head gives the log-variance of q(z | x); the
    84-d features are then the mean.
    """

    feature_dim = 84

    def __init__(self, vae: bool = False):
        super().__init__()
        self.vae = vae
        self.convs = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.AvgPool2d(2), nn.BatchNorm2d(6, affine=False),   # (B, 6, 30, 30)
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2), nn.BatchNorm2d(16, affine=False),  # (B, 16, 13, 13)
            nn.Flatten(),                                                                       # (B, 2704)
        )
        self.dense = nn.Sequential(_dense(16 * 13 * 13, 120), _dense(120, 84))
        self.head = _dense(84, 84)
        self.logvar_head = nn.Linear(84, 84) if vae else None
        # channels_last weights and inputs: a SimCLR step runs 1.5x faster on a 2-core CPU (measured;
        # the default layout spends most of its time in the 6-channel BatchNorm). Not measured on a GPU.
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor):
        """Features (B, 84); for a VAE, the pair (mu, logvar)."""
        hidden = self.dense(self.convs(x.contiguous(memory_format=torch.channels_last)))
        h = self.head(hidden)
        if self.vae:
            return h, self.logvar_head(hidden)
        return h

    def get_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 64, 64) -> (B, 84): the features, or the mean of q(z | x) for a VAE."""
        out = self(x)
        return out[0] if self.vae else out


class DSpritesDecoder(nn.Module):
    """Mirror of :class:`DSpritesEncoder`: (B, 84) latents -> (B, 1, 64, 64) logits."""

    def __init__(self, latent_dim: int = 84):
        super().__init__()
        self.dense = nn.Sequential(_dense(latent_dim, 84), _dense(84, 120), _dense(120, 16 * 13 * 13))
        self.deconvs = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),   # (B, 16, 26, 26)
            nn.ConvTranspose2d(16, 6, 5), nn.ReLU(),       # (B, 6, 30, 30)
            nn.Upsample(scale_factor=2, mode="nearest"),   # (B, 6, 60, 60)
            nn.ConvTranspose2d(6, 1, 5),                   # (B, 1, 64, 64) logits
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconvs(self.dense(z).view(-1, 16, 13, 13))


class ConvEncoder(nn.Module):
    """A small CNN for 28x28 or 32x32 images: three conv blocks, global pooling, a linear layer.

    (B, C, H, W) -> (B, feature_dim). Used by the SimCLR lab and the convolutional AE/VAE.
    """

    def __init__(self, in_channels: int = 3, feature_dim: int = 128, width: int = 32):
        super().__init__()
        self.feature_dim = feature_dim

        def block(c_in, c_out):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.convs = nn.Sequential(block(in_channels, width), block(width, 2 * width), block(2 * width, 4 * width),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, 4 * width)
        self.fc = nn.Linear(4 * width, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x))

    def get_features(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)


class ResNet18Encoder(nn.Module):
    """torchvision's ResNet-18 without its classifier: (B, 3, H, W) -> (B, 8 * width), 512 at the default width.

    ``small_images=True`` swaps the 7x7 stride-2 stem and max-pool for a 3x3
    stride-1 conv, the usual change for 32x32 inputs (SimCLR's CIFAR setup); STL-10's
    96 px images keep the standard stem (as the published STL-10 BYOL / SimCLR runs).
    ``width`` is the first stage's channel count (64 in ResNet-18; the four stages have
    width, 2, 4, 8 x width): the CPU scales of lab 3 use width 8, the same blocks and code.
    A fresh instance per call: the baseline and the SSL encoder never share weights.
    """

    def __init__(self, small_images: bool = True, width: int = 64):
        super().__init__()
        import torchvision

        net = torchvision.models.resnet18(weights=None)
        if width != 64:
            _rebuild_stages(net, width)
        if small_images:
            net.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
            net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.net = net
        self.feature_dim = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def get_features(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)


def _rebuild_stages(net: nn.Module, width: int) -> None:
    """Replace the stem and the four stages of a torchvision ResNet-18 by ones of ``width`` channels
    (torchvision's own ``_make_layer`` and initialization)."""
    from torchvision.models.resnet import BasicBlock as block
    net.inplanes = width
    net.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    net.layer1 = net._make_layer(block, width, 2)
    net.layer2 = net._make_layer(block, 2 * width, 2, stride=2)
    net.layer3 = net._make_layer(block, 4 * width, 2, stride=2)
    net.layer4 = net._make_layer(block, 8 * width, 2, stride=2)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def mlp(in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = True) -> nn.Sequential:
    """Linear -> (BatchNorm) -> ReLU -> Linear: SimCLR's projection head and BYOL's projector/predictor."""
    norm = nn.BatchNorm1d(hidden_dim) if batch_norm else nn.Identity()
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), norm, nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class MLPAutoencoder(nn.Module):
    """Fully connected autoencoder 784-128-32-2 (and back) with a sigmoid output.

    forward: (B, 1, 28, 28) or (B, 784) -> (reconstruction (B, 784) in [0, 1], z (B, latent_dim)).
    """

    def __init__(self, in_dim: int = 784, hidden=(128, 32), latent_dim: int = 2):
        super().__init__()
        dims = (in_dim, *hidden, latent_dim)
        self.encoder = _mlp_stack(dims)
        self.decoder = nn.Sequential(_mlp_stack(dims[::-1]), nn.Sigmoid())

    def forward(self, x: torch.Tensor):
        z = self.encoder(x.flatten(1))
        return self.decoder(z), z


class MLPVAE(nn.Module):
    """Fully connected VAE: 784-128-32 then mean and log-variance heads of size ``latent_dim``.

    forward: x -> (reconstruction (B, 784) in [0, 1], mu, logvar), sampling z by reparameterization.
    """

    def __init__(self, in_dim: int = 784, hidden=(128, 32), latent_dim: int = 2):
        super().__init__()
        self.body = nn.Sequential(_mlp_stack((in_dim, *hidden)), nn.ReLU())
        self.mu = nn.Linear(hidden[-1], latent_dim)
        self.logvar = nn.Linear(hidden[-1], latent_dim)
        self.decoder = nn.Sequential(_mlp_stack((latent_dim, *hidden[::-1], in_dim)), nn.Sigmoid())

    def encode(self, x: torch.Tensor):
        hidden = self.body(x.flatten(1))
        return self.mu(hidden), self.logvar(hidden)

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode(x)
        return self.decoder(reparameterize(mu, logvar)), mu, logvar


class VAE(nn.Module):
    """An encoder with a log-variance head (e.g. ``DSpritesEncoder(vae=True)``) and a decoder, as one model.

    forward: x -> (decoder(z), mu, logvar) with z drawn by :func:`reparameterize`.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encoder(x)
        return self.decoder(reparameterize(mu, logvar)), mu, logvar


def _mlp_stack(dims) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them (none after the last)."""
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with sigma = exp(logvar / 2), eps ~ N(0, I): differentiable in mu and logvar."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder for (B, C, 28, 28) or (B, C, 32, 32) images, optionally variational.

    Encoder: :class:`ConvEncoder` to ``latent_dim`` (plus a log-variance head if ``vae``).
    Decoder: linear to a (4 * width, 4, 4) map, then three stride-2 transposed convs back to the
    input size, sigmoid output.
    forward -> (reconstruction, z) or, for a VAE, (reconstruction, mu, logvar).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, latent_dim: int = 2, width: int = 32,
                 vae: bool = False):
        super().__init__()
        if image_size not in (28, 32):
            raise ValueError(f"image_size must be 28 or 32; got {image_size}.")
        self.vae, self.image_size = vae, image_size
        self.encoder = ConvEncoder(in_channels, 2 * latent_dim if vae else latent_dim, width)
        self.fc = nn.Linear(latent_dim, 4 * width * 4 * 4)
        first_pad = 1 if image_size == 32 else 0  # 4 -> 8 -> 16 -> 32, or 4 -> 7 -> 14 -> 28
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (4 * width, 4, 4)),
            nn.ConvTranspose2d(4 * width, 2 * width, 3, stride=2, padding=1, output_padding=first_pad), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width, in_channels, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor):
        out = self.encoder(x)
        if self.vae:
            mu, logvar = out.chunk(2, dim=1)
            return self.decoder(self.fc(reparameterize(mu, logvar))), mu, logvar
        return self.decoder(self.fc(out)), out
