"""Lab 1 (autoencoders and VAEs): the seven graded functions.

Inputs are drawn fresh for every grading run; references come from labkit, the
known-wrong variants (what the classic mistakes compute) from numpy here.
"""
from __future__ import annotations

import numpy as np
import torch

from . import kit
from .kit import Example, Exercise
from .kit import grad_of, scalar, tensor, to_numpy

F32 = np.float32


# ---------------------------------------------------------------------------- build_autoencoder

ENCODER_SHAPES = [(128, 784), (32, 128), (2, 32)]  # the Linear weights of model.encoder, as a set
DECODER_SHAPES = [(32, 2), (128, 32), (784, 128)]  # and of model.decoder


def autoencoder_cases(rng: np.random.Generator):
    return {
        "images": {"x": rng.random((5, 1, 28, 28), dtype=F32), "x_other": rng.random((5, 1, 28, 28), dtype=F32)},
        "flat": {"x": rng.random((7, 784), dtype=F32)},
        "parts": {"x_flat": rng.random((6, 784), dtype=F32), "z_in": rng.normal(size=(6, 2)).astype(F32)},
    }


def _linear_shapes(module) -> np.ndarray:
    """The weight shapes of a module's Linear layers, sorted: the widths, whatever order they were registered in."""
    shapes = sorted(tuple(m.weight.shape) for m in module.modules() if isinstance(m, torch.nn.Linear))
    return np.array(shapes, dtype=np.int64).reshape(-1, 2)


def probe_autoencoder(build_autoencoder, args):
    model = build_autoencoder()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"build_autoencoder() should return a torch.nn.Module, got {type(model).__name__}")
    model.eval()
    if "x_flat" in args:  # the parts the notebook uses: model.encoder (B, 784) -> (B, 2), model.decoder back
        for part in ("encoder", "decoder"):
            if not isinstance(getattr(model, part, None), torch.nn.Module):
                raise TypeError(f"the model has no .{part} module: the notebook calls model.encoder and model.decoder")
        with torch.no_grad():
            x = tensor(args["x_flat"])
            recon, z = model(x)
            return {"encoded": to_numpy(model.encoder(x), "model.encoder(x)"), "z_forward": to_numpy(z, "z"),
                    "recon_forward": to_numpy(recon, "the reconstruction"),
                    "redecoded": to_numpy(model.decoder(model.encoder(x)), "model.decoder(model.encoder(x))"),
                    "decoded": to_numpy(model.decoder(tensor(args["z_in"])), "model.decoder(z)"),
                    "encoder_shapes": _linear_shapes(model.encoder), "decoder_shapes": _linear_shapes(model.decoder)}
    out = {}
    for name, key in (("", "x"), ("_other", "x_other")):
        if key not in args:
            continue
        with torch.no_grad():
            result = model(tensor(args[key]))
        if not (isinstance(result, tuple) and len(result) == 2):
            raise TypeError("forward should return a pair (reconstruction, z)")
        out["recon" + name] = to_numpy(result[0], "the reconstruction")
        out["z" + name] = to_numpy(result[1], "z")
    return out


def _autoencoder_shapes(ev):
    for case in ("images", "flat"):
        batch = len(ev.inputs[case]["x"])
        recon, z = ev.get(case, "recon"), ev.get(case, "z")
        if recon.shape != (batch, 784) or z.shape != (batch, 2):
            what = "a (B, 1, 28, 28) batch" if case == "images" else "a flattened (B, 784) batch"
            return (f"for {what} forward should return shapes ({batch}, 784) and ({batch}, 2), got "
                    f"{tuple(recon.shape)} and {tuple(z.shape)}; flatten the input first (x.flatten(1))")
    return None


def _autoencoder_parts(ev):
    batch = len(ev.inputs["parts"]["x_flat"])
    encoded, decoded = ev.get("parts", "encoded"), ev.get("parts", "decoded")
    if encoded.shape != (batch, 2):
        return f"model.encoder should map a (B, 784) batch to (B, 2) codes; got {tuple(encoded.shape)}"
    if decoded.shape != (batch, 784):
        return f"model.decoder should map (B, 2) codes to (B, 784) images; got {tuple(decoded.shape)}"
    if not (kit.close(ev.get("parts", "z_forward"), encoded)
            and kit.close(ev.get("parts", "recon_forward"), ev.get("parts", "redecoded"))):
        return "forward should be z = self.encoder(x.flatten(1)), then (self.decoder(z), z)"
    return None


def _autoencoder_widths(ev):
    problems = []
    for part, expected, widths in (("encoder", ENCODER_SHAPES, "784 -> 128 -> 32 -> 2"),
                                   ("decoder", DECODER_SHAPES, "2 -> 32 -> 128 -> 784")):
        got = sorted(tuple(int(v) for v in row) for row in ev.get("parts", f"{part}_shapes"))
        if got != sorted(expected):
            problems.append(f"model.{part}'s Linear layers have weight shapes {got}; expected {sorted(expected)} "
                            f"({widths})")
    return "; ".join(problems) or None


def _autoencoder_depends(ev):
    z, z_other = ev.get("images", "z"), ev.get("images", "z_other")
    recon, recon_other = ev.get("images", "recon"), ev.get("images", "recon_other")
    if all(np.all(np.isfinite(a)) for a in (z, recon)) and not (kit.close(z, z_other) or kit.close(recon, recon_other)):
        return None
    return "its reconstruction and code do not depend on the input"


def _autoencoder_z_varies(ev):
    z, z_other = ev.get("images", "z"), ev.get("images", "z_other")
    if z.shape == z_other.shape and not kit.close(z, z_other) and np.ptp(z, axis=0).max() > 0:
        return None
    return "z does not depend on the input: z should be the encoder's output for x"


def _autoencoder_source(encoder: str, decoder: str, first: str = "encoder") -> str:
    """A build_autoencoder with the given encoder and decoder expressions, ``first`` registered first."""
    second = "decoder" if first == "encoder" else "encoder"
    parts = {"encoder": encoder, "decoder": decoder}
    return f"""\
def build_autoencoder():
    class Autoencoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.{first} = {parts[first]}
            self.{second} = {parts[second]}

        def forward(self, x):
            z = self.encoder(x.flatten(1))
            return self.decoder(z), z

    return Autoencoder()
"""


AUTOENCODER = Exercise(
    grade_id="autoencoder_test",
    function="build_autoencoder",
    cases=autoencoder_cases,
    probe=probe_autoencoder,
    checks=[
        kit.holds(1, _autoencoder_shapes),
        kit.in_range(1, "recon", 0.0, 1.0, cases=("images", "flat"),
                        hint="reconstructions leave [0, 1]: end the decoder with nn.Sigmoid()"),
        kit.holds(1, _autoencoder_parts),
        kit.holds(1, _autoencoder_widths),
        kit.holds(1, _autoencoder_z_varies),
    ],
    forbidden=("labkit.models.MLPAutoencoder",),
    gate=kit.holds(0, kit.all_pass(kit.holds(0, _autoencoder_shapes), kit.holds(0, _autoencoder_depends))),
    solutions=(
        Example("the decoder registered before the encoder", _autoencoder_source(
            "nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 2))",
            "nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 784), "
            "nn.Sigmoid())", first="decoder"), share=1.0),
        Example("an OrderedDict of named layers, reversed, for the encoder", """\
from collections import OrderedDict


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleDict(OrderedDict([("out", nn.Linear(32, 2)), ("mid", nn.Linear(128, 32)),
                                                 ("inp", nn.Linear(784, 128))]))

    def forward(self, x):
        return self.layers["out"](torch.relu(self.layers["mid"](torch.relu(self.layers["inp"](x)))))


class Autoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.decoder = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 128), nn.ReLU(),
                                     nn.Linear(128, 784), nn.Sigmoid())
        self.encoder = Encoder()

    def forward(self, x):
        z = self.encoder(x.reshape(len(x), -1))
        return self.decoder(z), z


def build_autoencoder():
    return Autoencoder()
""", share=1.0),
    ),
    mistakes=(
        Example("no sigmoid at the end of the decoder", _autoencoder_source(
            "nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 2))",
            "nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 784))"
        ).replace("    class", "    # Mistake: no sigmoid at the end of the decoder, so reconstructions leave [0, 1].\n"
                  "    class", 1), share=0.8, message="end the decoder with nn.Sigmoid()", demo=True),
        Example("a wider encoder (784-256-32-2)", _autoencoder_source(
            "nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 2))",
            "nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 784), "
            "nn.Sigmoid())"), share=0.8, message="model.encoder's Linear layers"),
        Example("no .encoder / .decoder attributes", """\
def build_autoencoder():
    # Mistake: one Sequential with the code in the middle; the notebook's model.decoder(z) cannot work.
    class Autoencoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(784, 128), nn.Linear(128, 32), nn.Linear(32, 2),
                                         nn.Linear(2, 32), nn.Linear(32, 128), nn.Linear(128, 784)])

        def forward(self, x):
            h = x.flatten(1)
            for i, layer in enumerate(self.layers):
                h = layer(h)
                if i == 2:
                    z = h
                h = torch.sigmoid(h) if i == 5 else (h if i == 2 else torch.relu(h))
            return h, z

    return Autoencoder()
""", share=0.6, message="the model has no .encoder module"),
    ),
    hostile=(
        Example("labkit's model under another name", """\
from labkit import models

def build_autoencoder():
    return models.MLPAutoencoder()
""", share=0.0, message="uses labkit's reference labkit.models.MLPAutoencoder"),
        Example("a copy of a labkit model built at cell time", """\
import copy
from labkit import models as _m
_made = _m.MLPAutoencoder()

def build_autoencoder():
    return copy.deepcopy(_made)
""", share=0.0),
    ),
)


# ---------------------------------------------------------------------------- reparameterize

SAMPLES = 20000


def reparameterize_cases(rng: np.random.Generator):
    # |logvar| kept away from the points where exp(logvar / 2) equals exp(logvar) or |logvar|,
    # so that the usual mistakes give a visibly different spread.
    logvar = np.where(rng.random((1, 3)) < 0.5, rng.uniform(0.5, 1.5, (1, 3)), rng.uniform(-2.0, -1.2, (1, 3)))
    return {
        "many": {"mu": rng.normal(size=(1, 3)).astype(F32), "logvar": logvar.astype(F32)},
        "batch": {"mu": rng.normal(size=(6, 4)).astype(F32), "logvar": rng.uniform(-1, 1, (6, 4)).astype(F32)},
    }


def probe_reparameterize(reparameterize, args):
    if len(args["mu"]) > 1:
        z = reparameterize(tensor(args["mu"]), tensor(args["logvar"]))
        return {"z": to_numpy(z, "z")}
    mu = tensor(np.repeat(args["mu"], SAMPLES, axis=0), grad=True)
    logvar = tensor(np.repeat(args["logvar"], SAMPLES, axis=0), grad=True)
    z = reparameterize(mu, logvar)
    samples = to_numpy(z, "z")
    if isinstance(z, torch.Tensor) and z.requires_grad:
        z.sum().backward()
    again = to_numpy(reparameterize(mu.detach(), logvar.detach()), "z")
    return {"shape": np.array(samples.shape), "mean": samples.mean(0), "std": samples.std(0),
            "head": samples[:200], "again": again[:200], "grad_mu": grad_of(mu)[:200],
            "grad_logvar": grad_of(logvar)[:200]}


def _reparameterize_mean(ev):
    if tuple(ev.get("batch", "z").shape) != (6, 4) or tuple(ev.get("many", "shape")) != (SAMPLES, 3):
        return "z should have the shape of mu"
    mu, sigma = ev.inputs["many"]["mu"][0], np.exp(0.5 * ev.inputs["many"]["logvar"][0])
    if np.all(np.abs(ev.get("many", "mean") - mu) <= 6 * sigma / np.sqrt(SAMPLES) + 1e-3):
        return None
    return "the samples are not centred on mu: z = mu + sigma * eps"


def _reparameterize_std(ev):
    std, logvar = ev.get("many", "std"), ev.inputs["many"]["logvar"][0].astype(np.float64)
    candidates = [
        (np.exp(0.5 * logvar), None),
        (np.exp(logvar), "the spread of z is exp(logvar), the variance: the standard deviation is exp(0.5 * logvar)"),
        (np.abs(logvar), "logvar was used as the standard deviation: sigma = exp(0.5 * logvar)"),
        (np.ones_like(logvar), "eps is not scaled: z = mu + exp(0.5 * logvar) * eps"),
        (np.zeros_like(logvar), "z has no noise: add exp(0.5 * logvar) * eps with eps = torch.randn_like(mu)"),
    ]
    for expected, message in candidates:
        if std.shape == expected.shape and np.allclose(std, expected, rtol=0.05, atol=0.01):
            return message
    return "the spread of z should be sigma = exp(0.5 * logvar)"


def _reparameterize_grads(ev):
    grad_mu, grad_logvar = ev.get("many", "grad_mu"), ev.get("many", "grad_logvar")
    noise = ev.get("many", "head") - ev.inputs["many"]["mu"]
    if not np.allclose(grad_mu, 1.0, atol=1e-4):
        return "no gradient reaches mu: build z from mu with torch operations (no .detach(), numpy or torch.normal)"
    if grad_logvar.shape != noise.shape or not np.all(np.isfinite(grad_logvar)) or not np.any(grad_logvar):
        return ("no gradient reaches logvar: compute sigma = torch.exp(0.5 * logvar) and return mu + sigma * eps "
                "(torch.normal has no gradient)")
    corr = [np.corrcoef(grad_logvar[:, d], noise[:, d])[0, 1] for d in range(noise.shape[1])]
    return None if min(corr) > 0.99 else "the gradient w.r.t. logvar is not that of mu + exp(0.5 * logvar) * eps"


def _reparameterize_random(ev):
    head, again = ev.get("many", "head"), ev.get("many", "again")
    if head.shape == again.shape and not kit.close(head, again, rtol=0, atol=1e-6):
        return None
    return "two calls gave the same z: draw fresh noise on every call (torch.randn_like(mu)), don't reseed"


REPARAMETERIZE = Exercise(
    grade_id="reparameterize_test",
    function="reparameterize",
    cases=reparameterize_cases,
    probe=probe_reparameterize,
    checks=[kit.holds(1, _reparameterize_mean), kit.holds(1, _reparameterize_std),
            kit.holds(1, _reparameterize_grads), kit.holds(1, _reparameterize_random)],
    forbidden=("labkit.models.reparameterize",),
    gate=kit.holds(0, kit.all_pass(kit.holds(0, _reparameterize_mean), kit.holds(0, _reparameterize_random))),
    mistakes=(
        Example("exp(logvar) as the standard deviation", """\
def reparameterize(mu, logvar):
    # Mistake: exp(logvar) is the variance, not the standard deviation.
    return mu + torch.exp(logvar) * torch.randn_like(mu)
""", share=0.75, message="exp(logvar), the variance", demo=True),
        Example("noise without a gradient path", """\
def reparameterize(mu, logvar):
    # Mistake: torch.normal draws the sample, so no gradient reaches mu or logvar.
    return torch.normal(mu.detach(), torch.exp(0.5 * logvar.detach()))
""", share=0.75, message="no gradient reaches mu"),
    ),
    hostile=(
        Example("labkit's reference, called by a helper", """\
from labkit import models
sample = models.reparameterize

def reparameterize(mu, logvar):
    return sample(mu, logvar)
""", share=0.0, message="labkit.models.reparameterize"),
    ),
)


# ---------------------------------------------------------------------------- vae_loss

def vae_cases(rng: np.random.Generator):
    def case(shape, latent, zero_latent=False):
        mu = np.zeros((shape[0], latent)) if zero_latent else rng.normal(size=(shape[0], latent))
        logvar = np.zeros((shape[0], latent)) if zero_latent else rng.uniform(-1.5, 1.0, (shape[0], latent))
        return {"x_recon": rng.uniform(0.02, 0.98, shape).astype(F32), "x": rng.random(shape, dtype=F32),
                "mu": mu.astype(F32), "logvar": logvar.astype(F32)}

    return {"flat5": case((5, 784), 2), "images3": case((3, 1, 28, 28), 2), "latent7": case((7, 50), 6),
            "kl_zero": case((4, 784), 2, zero_latent=True)}


def probe_vae_loss(vae_loss, args):
    x_recon = tensor(args["x_recon"], grad=True)
    loss = vae_loss(x_recon, tensor(args["x"]), tensor(args["mu"], grad=True), tensor(args["logvar"], grad=True))
    out = {"loss": scalar(loss, "vae_loss")}
    if loss.requires_grad:
        loss.backward()
    out["grad_recon"] = grad_of(x_recon)
    return out


def vae_reference(a):
    from labkit import losses

    args = [torch.from_numpy(a[k]) for k in ("x_recon", "x", "mu", "logvar")]
    return losses.vae_loss(*args).double().numpy()


def _terms(a):
    """The pieces of the loss and of its usual wrong versions, in float64."""
    r, x = a["x_recon"].astype(np.float64), a["x"].astype(np.float64)
    mu, lv = a["mu"].astype(np.float64), a["logvar"].astype(np.float64)
    log = lambda p: np.maximum(np.log(p), -100.0)  # as torch's binary_cross_entropy clamps
    bce = -(x * log(r) + (1 - x) * log(1 - r))
    kl = -0.5 * (1 + lv - mu**2 - np.exp(lv))
    return {"bce": bce, "kl": kl, "batch": len(x), "swapped": -(r * log(x) + (1 - r) * log(1 - x)),
            "kl_logstd": -0.5 * (1 + 2 * lv - mu**2 - np.exp(2 * lv)),
            "kl_std": -0.5 * (1 + lv - mu**2 - np.exp(0.5 * lv)), "mse": (r - x) ** 2}


def _variant(fn):
    return lambda a: np.float64(fn(_terms(a)))


VAE_MISTAKES = [
    (_variant(lambda t: t["bce"].sum() - t["kl"].sum()),
     "the KL term has the wrong sign: KL = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) is >= 0 and is added"),
    (_variant(lambda t: t["bce"].sum()), "the KL term is missing: add KL(q(z|x) || N(0, I)) to the BCE"),
    (_variant(lambda t: t["kl"].sum()), "the reconstruction (BCE) term is missing"),
    (_variant(lambda t: t["bce"].mean() + t["kl"].sum()),
     "the BCE is averaged (reduction='mean') while the KL is summed: sum both over pixels and batch"),
    (_variant(lambda t: t["bce"].mean() + t["kl"].mean()),
     "both terms are averaged (mean) instead of summed over pixels / latent dimensions and batch"),
    (_variant(lambda t: (t["bce"].sum() + t["kl"].sum()) / t["batch"]),
     "the loss is divided by the batch size: vae_loss sums over the batch (the training step divides)"),
    (_variant(lambda t: t["bce"].sum() + t["kl"].sum() / t["batch"]),
     "the KL term is averaged over the batch instead of summed"),
    (_variant(lambda t: t["bce"].sum() + t["kl"].mean()),
     "the KL term is averaged (mean) instead of summed over latent dimensions and batch"),
    (_variant(lambda t: t["bce"].sum() + t["kl_logstd"].sum()),
     "the KL term treats logvar as log(sigma): logvar is log(sigma^2), "
     "so KL = -0.5 * sum(1 + logvar - mu^2 - exp(logvar))"),
    (_variant(lambda t: t["bce"].sum() + t["kl_std"].sum()),
     "the KL term uses the standard deviation exp(logvar / 2) where the variance exp(logvar) belongs"),
    (_variant(lambda t: t["swapped"].sum() + t["kl"].sum()),
     "the arguments of the BCE are swapped: F.binary_cross_entropy(x_recon, x), the target x second"),
    (_variant(lambda t: t["mse"].sum() + t["kl"].sum()),
     "the reconstruction term is a squared error; this lab's decoder is Bernoulli: use binary cross-entropy"),
]

VAE_LOSS = Exercise(
    grade_id="vae_loss_test",
    function="vae_loss",
    cases=vae_cases,
    probe=probe_vae_loss,
    checks=[
        kit.matches(4, "loss", vae_reference, cases=("flat5", "images3", "latent7"), variants=VAE_MISTAKES,
                       hint="the loss differs from BCE (summed) + KL (summed) on fresh inputs"),
        kit.matches(1, "loss", vae_reference, cases=("kl_zero",), variants=[
            (_variant(lambda t: t["bce"].mean()), "with mu = 0 and logvar = 0 only the BCE is left, and it is "
             "averaged: sum it over pixels and batch (reduction='sum')"),
            (_variant(lambda t: t["bce"].sum() / t["batch"]), "with mu = 0 and logvar = 0 only the BCE is left, "
             "divided by the batch size: sum it over the batch")],
            hint="with mu = 0 and logvar = 0 the KL term is 0, so the loss should be the summed BCE alone"),
        kit.finite(1, "grad_recon", cases=("flat5",), nonzero=True,
                      hint="no finite gradient reaches x_recon: build the loss with torch operations "
                           "(no .item(), .detach() or numpy)"),
    ],
    forbidden=("labkit.losses.vae_loss",),
    gate=kit.varies("loss", cases=("flat5", "images3", "latent7"),
                    hint="the loss is the same (or not finite) on different inputs"),
    mistakes=(
        Example("BCE averaged, KL summed", """\
def vae_loss(x_recon, x, mu, logvar):
    # Mistake: BCE averaged (mean) while the KL is summed.
    bce = F.binary_cross_entropy(x_recon, x)
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kl
""", share=1 / 6, message="BCE is averaged (reduction='mean') while the KL is summed", demo=True),
        Example("the KL term subtracted", """\
def vae_loss(x_recon, x, mu, logvar):
    # Mistake: the KL term is subtracted.
    bce = F.binary_cross_entropy(x_recon, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce - kl
""", share=1 / 3, message="vae_loss: the KL term has the wrong sign: KL = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) "
                          "is >= 0 and is added"),
    ),
    hostile=(
        Example("labkit's reference", """\
from labkit import losses

def vae_loss(x_recon, x, mu, logvar):
    return losses.vae_loss(x_recon, x, mu, logvar)
""", share=0.0, message="uses labkit's reference labkit.losses.vae_loss (cell vae_loss_solution)"),
        Example("labkit's reference behind __import__ and getattr", """\
ref = getattr(__import__('lab' + 'kit.losses', fromlist=['x']), 'vae' + '_loss')

def vae_loss(*args):
    return ref(*args)
""", share=0.0, message="called labkit's reference labkit.losses.vae_loss while being graded"),
        Example("the value of the visible example, hard-coded", """\
def vae_loss(x_recon, x, mu, logvar):
    return torch.tensor(27.0321, requires_grad=True)
""", share=0.0),
        Example("the reference unwrapped from the tripwire (inspect.unwrap)", """\
import inspect
from labkit import losses as _l
_ref = inspect.unwrap(_l.vae_loss)

def vae_loss(x_recon, x, mu, logvar):
    return _ref(x_recon, x, mu, logvar)
""", share=0.0),
        Example("the reference fished out of the tripwire's closure", """\
from labkit import losses as _l
_inner = _l.vae_loss
while getattr(_inner, "__closure__", None):
    _inner = next(c.cell_contents for c in _inner.__closure__ if callable(c.cell_contents))

def vae_loss(x_recon, x, mu, logvar):
    return _inner(x_recon, x, mu, logvar)
""", share=0.0),
        Example("the tripwires switched off, labkit imported afresh", """\
import sys
for _finder in list(sys.meta_path):
    for _attribute in ("targets", "active", "calls"):
        if hasattr(_finder, _attribute):
            try:
                setattr(_finder, _attribute, {} if _attribute != "active" else None)
            except Exception:
                pass
sys.meta_path[:] = [f for f in sys.meta_path if not hasattr(f, "targets")]
for _name in [m for m in sys.modules if m.startswith("labkit")]:
    del sys.modules[_name]
from labkit import losses as _fresh

def vae_loss(x_recon, x, mu, logvar):
    return _fresh.vae_loss(x_recon, x, mu, logvar)
""", share=0.0),
        Example("labkit's source file executed by hand", """\
import labkit.losses as _l
_scope = {"__name__": "labkit.losses", "__package__": "labkit", "__file__": _l.__file__}
exec(compile(open(_l.__file__).read(), _l.__file__, "exec"), _scope)

def vae_loss(x_recon, x, mu, logvar):
    return _scope["vae_loss"](x_recon, x, mu, logvar)
""", share=0.0),
        Example("answers computed at cell time from the judge's inputs, replayed by input hash", """\
import glob, hashlib
import numpy as np
from labkit import losses as _l
_answers = {}
for _path in glob.glob("../io/*") + glob.glob("*.npz") + glob.glob("/tmp/*"):
    try:
        with np.load(_path) as _data:
            for _key in _data.files:
                _answers[hashlib.sha1(_data[_key].tobytes()).hexdigest()] = _data[_key]
    except Exception:
        pass

def vae_loss(x_recon, x, mu, logvar):
    _key = hashlib.sha1(x_recon.detach().numpy().tobytes()).hexdigest()
    if _key in _answers:
        return torch.tensor(float(np.sum(_answers[_key])), requires_grad=True)
    return (x_recon * 0).sum() + 1.0
""", share=0.0),
    ),
)


# ---------------------------------------------------------------------------- interpolate

def interpolate_cases(rng: np.random.Generator):
    def case(dim, steps):
        return {"z_start": rng.normal(size=dim).astype(F32), "z_end": rng.normal(size=dim).astype(F32),
                "num_steps": np.array(steps)}

    return {"d2_steps5": case(2, 5), "d7_steps9": case(7, 9), "d3_steps2": case(3, 2)}


def probe_interpolate(interpolate, args):
    path = interpolate(tensor(args["z_start"]), tensor(args["z_end"]), int(args["num_steps"]))
    return {"path": to_numpy(path, "interpolate")}


def _line(a, t):
    return (1 - t[:, None]) * a["z_start"].astype(np.float64) + t[:, None] * a["z_end"].astype(np.float64)


def interpolate_reference(a):
    return _line(a, np.linspace(0, 1, int(a["num_steps"])))


INTERPOLATE_CASES = ("d2_steps5", "d7_steps9", "d3_steps2")


def _interpolate_shape(ev):
    for case in INTERPOLATE_CASES:
        a, path = ev.inputs[case], ev.get(case, "path")
        expected = (int(a["num_steps"]), len(a["z_start"]))
        if path.shape == expected[::-1] and expected[0] != expected[1]:
            return "the points should be the rows: shape (num_steps, D), not (D, num_steps)"
        if path.shape != expected:
            return f"expected shape (num_steps, D) = {expected}, got {tuple(path.shape)} (on the '{case}' inputs)"
    return None


def _interpolate_ends(ev):
    for case in INTERPOLATE_CASES:
        a, path = ev.inputs[case], ev.get(case, "path")
        if path.ndim != 2 or len(path) < 2 or not kit.close(path[0], a["z_start"]):
            return "the first point should be z_start"
        if not kit.close(path[-1], a["z_end"]):
            return "the last point should be z_end: include both ends (torch.linspace(0, 1, num_steps))"
    return None


INTERPOLATE = Exercise(
    grade_id="interpolate_test",
    function="interpolate",
    cases=interpolate_cases,
    probe=probe_interpolate,
    checks=[
        kit.holds(1, _interpolate_shape),
        kit.holds(1, _interpolate_ends),
        kit.matches(2, "path", interpolate_reference, cases=INTERPOLATE_CASES, variants=[
            (lambda a: _line(a, np.arange(int(a["num_steps"])) / int(a["num_steps"])),
             "t should run from 0 to 1 inclusive: torch.linspace(0, 1, num_steps), not arange(num_steps) / num_steps"),
            (lambda a: _line(a, np.linspace(1, 0, int(a["num_steps"]))), "the path runs backwards: start at z_start")],
            hint="the points should be evenly spaced on the line: z = (1 - t) * z_start + t * z_end, "
                 "t = linspace(0, 1, num_steps)"),
    ],
    mistakes=(
        Example("t = arange(num_steps) / num_steps", """\
def interpolate(z_start, z_end, num_steps):
    # Mistake: t never reaches 1, so the path stops short of z_end.
    t = (torch.arange(num_steps) / num_steps).unsqueeze(1)
    return (1 - t) * z_start + t * z_end
""", share=0.25, message="linspace(0, 1, num_steps), not arange"),
        Example("points as columns", """\
def interpolate(z_start, z_end, num_steps):
    # Mistake: the result is transposed, (D, num_steps).
    t = torch.linspace(0, 1, num_steps).unsqueeze(1)
    return ((1 - t) * z_start + t * z_end).T
""", share=0.0, message="not (D, num_steps)"),
    ),
    hostile=(
        Example("the visible example's answer, hard-coded", """\
def interpolate(z_start, z_end, num_steps):
    return torch.tensor([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0], [3.0, -1.0], [4.0, -2.0]])
""", share=0.0),
    ),
)


# ---------------------------------------------------------------------------- cluster_latents

def cluster_cases(rng: np.random.Generator):
    k, dim = int(rng.integers(3, 6)), int(rng.choice([2, 5]))
    centres = rng.uniform(-30, 30, size=(1, dim))
    while len(centres) < k:  # centres at least 12 apart: blobs of unit spread are well separated
        candidate = rng.uniform(-30, 30, size=(1, dim))
        if np.linalg.norm(centres - candidate, axis=1).min() > 12:
            centres = np.vstack([centres, candidate])
    truth = rng.permutation(np.repeat(np.arange(k), rng.integers(25, 45, size=k)))
    z = centres[truth] + rng.normal(size=(len(truth), dim))
    return {"blobs": {"z": z.astype(F32), "num_clusters": np.array(k), "_truth": truth}}


def probe_cluster(cluster_latents, args):
    labels = cluster_latents(tensor(args["z"]), int(args["num_clusters"]), seed=0)
    return {"labels": to_numpy(labels, "cluster_latents", allow_numpy=True)}


def _cluster_valid(ev):
    labels, a = ev.get("blobs", "labels"), ev.inputs["blobs"]
    ok = labels.shape == (len(a["z"]),) and np.all(labels == np.round(labels))
    if ok and labels.min() >= 0 and labels.max() < int(a["num_clusters"]):
        return None
    return "cluster_latents should return one integer label in [0, num_clusters) per row of z, shape (N,)"


def _cluster_blobs(ev):
    from sklearn.metrics import adjusted_rand_score

    labels, truth = ev.get("blobs", "labels"), ev.inputs["blobs"]["_truth"]
    if labels.shape != truth.shape:
        return "no clustering to score: one label per row of z is needed"
    ari = adjusted_rand_score(truth, labels.astype(np.int64))
    if ari > 0.9:
        return None
    return (f"well-separated blobs were not found (adjusted Rand index {ari:.2f} <= 0.9): run k-means with "
            "num_clusters clusters on the rows of z")


CLUSTER = Exercise(
    grade_id="cluster_test",
    function="cluster_latents",
    cases=cluster_cases,
    probe=probe_cluster,
    checks=[kit.holds(1, _cluster_valid), kit.holds(1, _cluster_blobs)],
    forbidden=("labkit.evaluation.cluster_scores",),
    gate=kit.holds(0, _cluster_blobs),  # valid labels that ignore z (all zeros, random) earn nothing
    mistakes=(
        Example("one cluster for everything", """\
def cluster_latents(z, num_clusters, seed=0):
    # Mistake: every point gets label 0.
    return np.zeros(len(z), dtype=int)
""", share=0.0, message="adjusted Rand index"),
        Example("labels counted from 1", """\
def cluster_latents(z, num_clusters, seed=0):
    # Mistake: labels 1..k instead of 0..k-1.
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=num_clusters, n_init=10, random_state=seed).fit_predict(z.numpy()) + 1
""", share=0.5, message="one integer label in [0, num_clusters)"),
    ),
)


# ---------------------------------------------------------------------------- conv encoder and decoder

def _conv_case(rng, channels: int, size: int, dim: int, encoder: bool):
    """Inputs x, x_other (images for an encoder, codes for a decoder) and weights for a backward pass."""
    images, codes = (4, channels, size, size), (4, dim)
    inp, out = (images, codes) if encoder else (codes, images)
    draw = (lambda: rng.random(inp, dtype=F32)) if encoder else (lambda: rng.normal(size=inp).astype(F32))
    return {"channels": np.array(channels), "size": np.array(size), "dim": np.array(dim), "x": draw(),
            "x_other": draw(), "weights": rng.normal(size=out).astype(F32)}


def conv_encoder_cases(rng: np.random.Generator):
    return {"mnist": _conv_case(rng, 1, 28, int(rng.choice([2, 4])), encoder=True),
            "cifar": _conv_case(rng, 3, 32, int(rng.choice([3, 6])), encoder=True)}


def conv_decoder_cases(rng: np.random.Generator):
    return {"mnist": _conv_case(rng, 1, 28, int(rng.choice([2, 4])), encoder=False),
            "cifar": _conv_case(rng, 3, 32, int(rng.choice([3, 6])), encoder=False)}


def _probe_conv(build, args, what):
    """Build the part, run it on x and x_other (eval mode), then once in training mode with a backward pass."""
    module = build(int(args["channels"]), int(args["size"]), int(args["dim"]))
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{what} should return a torch.nn.Module, got {type(module).__name__}")
    module.eval()
    with torch.no_grad():
        out = {"y": to_numpy(module(tensor(args["x"])), what), "y_other": to_numpy(module(tensor(args["x_other"])), what),
               "y_head": to_numpy(module(tensor(args["x"][:2])), what)}
    x = tensor(args["x"], grad=True)
    y = module.train()(x)
    if isinstance(y, torch.Tensor) and y.requires_grad and y.shape == args["weights"].shape:
        (y * tensor(args["weights"])).sum().backward()
    out["grad_x"] = grad_of(x)
    out["no_grad"] = np.array(sum(p.grad is None for p in module.parameters()))
    out["conv"] = np.array(any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules()))
    return out


def probe_conv_encoder(build_conv_encoder, args):
    return _probe_conv(build_conv_encoder, args, "build_conv_encoder(in_channels, image_size, out_dim)")


def probe_conv_decoder(build_conv_decoder, args):
    return _probe_conv(build_conv_decoder, args, "build_conv_decoder(out_channels, image_size, latent_dim)")


def _conv_shapes(expected, what: str, cases=("mnist", "cifar")):
    """The output has the expected shape on each case (28 px, 1 channel; 32 px, 3 channels)."""
    def run(ev):
        for case in cases:
            a, size = ev.inputs[case], int(ev.inputs[case]["size"])
            hint = f"; it should work for {size} px images too (work the sizes out from image_size)"
            if "y" not in ev.outputs.get(case, {}):
                return f"{what} failed on {ev.describe(case)}: {ev.errors.get(case, 'no output')}{hint}"
            got = ev.outputs[case]["y"].shape
            if got != expected(a):
                return f"{what} gave shape {tuple(got)} on {ev.describe(case)}; expected {expected(a)}{hint}"
        return None
    return run


def _encoder_out(a):
    return (4, int(a["dim"]))


def _decoder_out(a):
    return (4, int(a["channels"]), int(a["size"]), int(a["size"]))


def _conv_depends(ev):
    y, y_other, head = ev.get("mnist", "y"), ev.get("mnist", "y_other"), ev.get("mnist", "y_head")
    if not np.all(np.isfinite(y)) or kit.close(y, y_other):
        return "the output does not depend on the input"
    if head.shape != y[:2].shape or not kit.close(head, y[:2], rtol=1e-3, atol=1e-4):
        return "each row of the output should depend on its own input only (in eval mode)"
    return None


def _conv_gradients(ev):
    grad, unused = ev.get("mnist", "grad_x"), int(ev.get("mnist", "no_grad"))
    if grad.size == 0 or not np.all(np.isfinite(grad)) or not np.any(grad) or unused:
        return ("gradients should flow back to the input and to every parameter: use torch operations only "
                "(no .detach(), numpy or torch.no_grad inside the model), and no unused layers")
    return None


def _conv_uses_convolutions(hint):
    def run(ev):
        return None if bool(ev.get("mnist", "conv")) else hint
    return run


CONV_ENCODER = Exercise(
    grade_id="conv_encoder_test",
    function="build_conv_encoder",
    cases=conv_encoder_cases,
    probe=probe_conv_encoder,
    checks=[
        kit.holds(1, _conv_shapes(_encoder_out, "the encoder")),
        kit.holds(1, _conv_depends),
        kit.holds(1, _conv_gradients),
        kit.holds(1, _conv_uses_convolutions("the encoder has no convolution: use nn.Conv2d layers")),
    ],
    forbidden=("labkit.models.ConvEncoder", "labkit.models.ConvAutoencoder"),
    gate=kit.holds(0, kit.all_pass(kit.holds(0, _conv_shapes(_encoder_out, "the encoder", ("mnist",))),
                                   kit.holds(0, _conv_depends))),
    solutions=(Example("strided convolutions, flattened with the size worked out from image_size", """\
def build_conv_encoder(in_channels, image_size, out_dim):
    side = image_size // 4  # two stride-2 convs: 28 -> 14 -> 7, 32 -> 16 -> 8
    return nn.Sequential(nn.Conv2d(in_channels, 16, 4, stride=2, padding=1), nn.LeakyReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.LeakyReLU(), nn.Flatten(),
                         nn.Linear(32 * side * side, out_dim))
""", share=1.0),),
    mistakes=(
        Example("the flattened size hard-coded for 28 px images", """\
def build_conv_encoder(in_channels, image_size, out_dim):
    # Mistake: 128 * 3 * 3 is the flattened size for 28 px images only (32 px gives 128 * 4 * 4).
    def block(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(block(in_channels, 32), block(32, 64), block(64, 128), nn.Flatten(),
                         nn.Linear(128 * 3 * 3, out_dim))
""", share=0.75, message="it should work for 32 px images too", demo=True),
        Example("an MLP, no convolution", """\
def build_conv_encoder(in_channels, image_size, out_dim):
    # Mistake: no convolution at all.
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, 128), nn.ReLU(), nn.Linear(128, out_dim))
""", share=0.75, message="has no convolution"),
    ),
    hostile=(Example("labkit's ConvEncoder", """\
from labkit import models

def build_conv_encoder(in_channels, image_size, out_dim):
    return models.ConvEncoder(in_channels, out_dim)
""", share=0.0, message="labkit.models.ConvEncoder"),),
)

CONV_DECODER = Exercise(
    grade_id="conv_decoder_test",
    function="build_conv_decoder",
    cases=conv_decoder_cases,
    probe=probe_conv_decoder,
    checks=[
        kit.holds(1, _conv_shapes(_decoder_out, "the decoder")),
        kit.in_range(1, "y", 0.0, 1.0, cases=("mnist", "cifar"),
                     hint="decoded images leave [0, 1]: end the decoder with nn.Sigmoid()"),
        kit.holds(1, _conv_gradients),
        kit.holds(1, _conv_uses_convolutions(
            "the decoder has no convolution: upsample with nn.ConvTranspose2d (or nn.Upsample and nn.Conv2d)")),
    ],
    forbidden=("labkit.models.ConvAutoencoder",),
    gate=kit.holds(0, kit.all_pass(kit.holds(0, _conv_shapes(_decoder_out, "the decoder", ("mnist",))),
                                   kit.holds(0, _conv_depends))),
    solutions=(Example("nearest-neighbour upsampling and convolutions", """\
def build_conv_decoder(out_channels, image_size, latent_dim):
    side = image_size // 4
    return nn.Sequential(nn.Linear(latent_dim, 64 * side * side), nn.ReLU(), nn.Unflatten(1, (64, side, side)),
                         nn.Upsample(scale_factor=2), nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(),
                         nn.Upsample(scale_factor=2), nn.Conv2d(32, out_channels, 3, padding=1), nn.Sigmoid())
""", share=1.0),),
    mistakes=(
        Example("no sigmoid at the end", """\
def build_conv_decoder(out_channels, image_size, latent_dim):
    # Mistake: no sigmoid at the end, so the images leave [0, 1].
    pad = 1 if image_size == 32 else 0
    return nn.Sequential(
        nn.Linear(latent_dim, 128 * 4 * 4), nn.Unflatten(1, (128, 4, 4)),
        nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=pad), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, out_channels, 3, stride=2, padding=1, output_padding=1))
""", share=0.75, message="end the decoder with nn.Sigmoid()", demo=True),
        Example("sizes for 28 px images only", """\
def build_conv_decoder(out_channels, image_size, latent_dim):
    # Mistake: 4 -> 7 -> 14 -> 28 whatever image_size is.
    return nn.Sequential(
        nn.Linear(latent_dim, 128 * 4 * 4), nn.Unflatten(1, (128, 4, 4)),
        nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, out_channels, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid())
""", share=0.75, message="expected (4, 3, 32, 32)"),
    ),
)

EXERCISES = [AUTOENCODER, REPARAMETERIZE, VAE_LOSS, INTERPOLATE, CLUSTER, CONV_ENCODER, CONV_DECODER]
