"""Where the data lives (the site) and how big the run is (the scale).

Sites come from ``data_paths.toml``: labkit looks for it in ``$LABKIT_DATA_PATHS``,
else in the working directory and its parents (a checkout of the course repo),
else falls back to built-in defaults. The per-user file
``~/.config/labkit/data_paths.toml`` is merged on top and may pick the site
(``site = "cluster"``) or change any site's table. ``$LABKIT_SITE`` beats both.
Relative roots are resolved against the file that defines them.

The scale is ``full`` (a student with a GPU), ``grade`` (nbgrader executing the
notebook: it sets ``NBGRADER_EXECUTION``) or ``ci`` (tests); ``$LABKIT_SCALE``
overrides the guess. Notebooks size their runs with :func:`by_scale`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SCALES = ("full", "grade", "ci")
USER_FILE = Path("~/.config/labkit/data_paths.toml").expanduser()

# Used when no data_paths.toml is found (labkit installed from a wheel, no repo).
_BUILTIN = {
    "default_site": "local",
    "sites": {
        "local": {"root": "~/labkit_data", "download": True},
        "colab": {"root": "/content/data", "download": True},
        "colab_drive": {"root": "/content/drive/MyDrive/labkit_data", "download": True},  # Google Drive, mounted
        "offline": {"root": "~/.cache/labkit/offline", "download": False, "synthetic": True},
    },
}


@dataclass(frozen=True)
class Site:
    """One place datasets live: ``root/<dataset>/...`` in torchvision's layout."""

    name: str
    root: Path
    download: bool = False
    synthetic: bool = False
    source: str = "built-in defaults"

    def describe(self) -> str:
        kind = "synthetic stand-ins" if self.synthetic else ("downloads allowed" if self.download else "read-only")
        return f"site '{self.name}' -> {self.root} ({kind}; from {self.source})"


def _find_project_file() -> Path | None:
    explicit = os.environ.get("LABKIT_DATA_PATHS")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"LABKIT_DATA_PATHS={explicit!r} is not a file; point it at a data_paths.toml or unset it.")
        return path
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / "data_paths.toml"
        if candidate.is_file():
            return candidate
    return None


def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML ({err}); fix or remove it.") from None


def _load_tables() -> tuple[dict, dict[str, Path], list[str]]:
    """Merged settings, the folder each site's relative root is resolved against, and the sources."""
    project = _find_project_file()
    settings = {"default_site": _BUILTIN["default_site"], "sites": {}}
    base: dict[str, Path] = {}
    layers = [(_BUILTIN, Path.home(), "built-in defaults")] if project is None else []
    if project is not None:
        layers.append((_read(project), project.parent, str(project)))
    if USER_FILE.is_file():
        layers.append((_read(USER_FILE), USER_FILE.parent, str(USER_FILE)))
    for table, folder, _ in layers:
        for key in ("default_site", "site"):
            if key in table:
                settings[key] = table[key]
        for name, fields in table.get("sites", {}).items():
            settings["sites"].setdefault(name, {}).update(fields)
            if "root" in fields:
                base[name] = folder
    return settings, base, [src for *_, src in layers]


def get_site(name: str | None = None) -> Site:
    """The site in use: ``name``, else ``$LABKIT_SITE``, else the files' choice."""
    settings, base, sources = _load_tables()
    name = name or os.environ.get("LABKIT_SITE") or settings.get("site") or settings["default_site"]
    sites = settings["sites"]
    if name not in sites:
        raise KeyError(f"Unknown data site {name!r}; known sites: {sorted(sites)} (defined in {', '.join(sources)}). "
                       "Set LABKIT_SITE to one of them or add a [sites.NAME] table.")
    fields = sites[name]
    if "root" not in fields:
        raise ValueError(f"Site {name!r} has no 'root'; add root = \"/path/to/datasets\" to its table.")
    root = Path(os.path.expandvars(str(fields["root"]))).expanduser()
    if not root.is_absolute():
        root = (base.get(name, Path.cwd()) / root).resolve()
    return Site(name=name, root=root, download=bool(fields.get("download", False)),
                synthetic=bool(fields.get("synthetic", False)), source=" + ".join(sources))


def get_scale() -> str:
    """``$LABKIT_SCALE`` if set, else ``grade`` under nbgrader, else ``full``."""
    scale = os.environ.get("LABKIT_SCALE")
    if scale:
        if scale not in SCALES:
            raise ValueError(f"LABKIT_SCALE={scale!r}; use one of {SCALES}.")
        return scale
    return "grade" if os.environ.get("NBGRADER_EXECUTION") else "full"


def by_scale(full, grade, ci):
    """Pick the value for the current scale, e.g. ``num_epochs = by_scale(full=30, grade=2, ci=1)``."""
    return {"full": full, "grade": grade, "ci": ci}[get_scale()]


def quiet() -> bool:
    """Progress bars and chatter are off under ``grade`` and ``ci`` unless ``LABKIT_PROGRESS=1``."""
    if os.environ.get("LABKIT_PROGRESS"):
        return os.environ["LABKIT_PROGRESS"] in ("0", "false", "no")
    return get_scale() != "full"
