"""Sites from data_paths.toml, the per-user override, and the scale."""
from pathlib import Path

import pytest

from labkit import config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No env overrides, no real user file, working directory in tmp_path."""
    for var in ("LABKIT_SITE", "LABKIT_DATA_PATHS", "LABKIT_SCALE", "NBGRADER_EXECUTION", "LABKIT_PROGRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(config, "USER_FILE", tmp_path / "user" / "data_paths.toml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_repo_file_is_found_from_a_lab_folder(isolated, monkeypatch):
    monkeypatch.chdir(REPO / "labkit")
    site = config.get_site()
    assert site.name == "local" and site.root == REPO / "data" and site.download
    offline = config.get_site("offline")
    assert offline.synthetic and not offline.download and offline.root == REPO / "data" / "offline"
    assert "data_paths.toml" in offline.describe()


def test_env_and_user_override(isolated, monkeypatch):
    (isolated / "data_paths.toml").write_text('default_site = "a"\n[sites.a]\nroot = "rel"\n[sites.b]\nroot = "/abs"\n')
    assert config.get_site().root == isolated / "rel"
    monkeypatch.setenv("LABKIT_SITE", "b")
    assert config.get_site().root == Path("/abs")
    monkeypatch.delenv("LABKIT_SITE")
    config.USER_FILE.parent.mkdir()
    config.USER_FILE.write_text('site = "b"\n[sites.b]\nroot = "/mine"\ndownload = true\n')
    site = config.get_site()
    assert site.name == "b" and site.root == Path("/mine") and site.download


def test_unknown_site_and_bad_files_say_what_to_do(isolated, monkeypatch):
    (isolated / "data_paths.toml").write_text('[sites.a]\nroot = "x"\n')
    with pytest.raises(KeyError, match="known sites: \\['a'\\]"):
        config.get_site("nope")
    (isolated / "data_paths.toml").write_text("[sites.a\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        config.get_site()
    monkeypatch.setenv("LABKIT_DATA_PATHS", str(isolated / "missing.toml"))
    with pytest.raises(FileNotFoundError, match="LABKIT_DATA_PATHS"):
        config.get_site()


def test_builtin_defaults_without_any_file(isolated):
    site = config.get_site()
    assert site.name == "local" and site.source == "built-in defaults"


def test_scale(isolated, monkeypatch):
    assert config.get_scale() == "full" and not config.quiet()
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert config.get_scale() == "grade" and config.quiet()
    assert config.by_scale(full=1, grade=2, ci=3) == 2
    monkeypatch.setenv("LABKIT_SCALE", "ci")
    assert config.by_scale(full=1, grade=2, ci=3) == 3
    monkeypatch.setenv("LABKIT_PROGRESS", "1")
    assert not config.quiet()
    monkeypatch.setenv("LABKIT_SCALE", "huge")
    with pytest.raises(ValueError, match="LABKIT_SCALE"):
        config.get_scale()
