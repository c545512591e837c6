"""Runtime half of the delegation check, installed in the child before any student code runs.

An import hook wraps the named labkit references (``labkit.losses.vae_loss``, a
class's ``__init__`` for ``labkit.models.MLPAutoencoder``) as their module is
loaded, so every way of reaching them, aliases and ``from ... import`` included,
goes through the wrapper. A call while a probe is running is recorded against
that probe's exercise and reported to the parent, which decides whether that
reference was forbidden for it. Reloading the module re-wraps it.
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery


class Tripwires(importlib.abc.MetaPathFinder):
    def __init__(self, references: list[str]):
        self.targets: dict[str, list[str]] = {}
        for reference in references:
            module, _, name = reference.rpartition(".")
            self.targets.setdefault(module, []).append(name)
        self.active: str | None = None  # grade_id of the exercise being probed
        self.calls: dict[str, set[str]] = {}

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.targets:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _WrappingLoader(spec.loader, self, fullname)
        return spec

    def hit(self, reference: str) -> None:
        if self.active is not None:
            self.calls.setdefault(self.active, set()).add(reference)

    def wrap(self, module) -> None:
        for name in self.targets.get(module.__name__, ()):
            obj = getattr(module, name, None)
            reference = f"{module.__name__}.{name}"
            if isinstance(obj, type):
                obj.__init__ = self._wrapped(obj.__init__, reference)
            elif callable(obj):
                setattr(module, name, self._wrapped(obj, reference))

    def _wrapped(self, fn, reference: str):
        @functools.wraps(fn)
        def tripwire(*args, **kwargs):
            self.hit(reference)
            return fn(*args, **kwargs)

        return tripwire


class _WrappingLoader(importlib.abc.Loader):
    """Delegates to the real loader, then wraps the module's references."""

    def __init__(self, loader, tripwires: Tripwires, name: str):
        self.loader, self.tripwires, self.name = loader, tripwires, name

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.tripwires.wrap(module)

    def __getattr__(self, attr):  # get_source, is_package, ... of the real loader
        return getattr(self.loader, attr)
