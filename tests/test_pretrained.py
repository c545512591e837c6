"""The shipped dSprites encoders: present, intact, frozen when loaded, and showing the lab's science."""
import shutil

import pytest
import torch

from labkit import pretrained, training
from labkit.datasets import dsprites


def test_every_shipped_file_is_listed_and_matches_its_hash():
    assert pretrained.verify() == []
    table = pretrained.manifest()
    assert set(table) == set(pretrained.NAMES) | {"vae_decoder", "vae_biased_decoder", "vae_bias_ctrl_decoder"}
    for stem, entry in table.items():
        recipe_name = stem.removesuffix("_decoder")
        assert entry["recipe"] == pretrained.dataclasses.asdict(pretrained.RECIPES[recipe_name]), stem
        assert entry["data"] == pretrained.DATA


@pytest.mark.parametrize("name", pretrained.NAMES)
def test_loaded_encoders_are_frozen_and_give_84_features(name):
    encoder = pretrained.load_encoder(name, device="cpu")
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    images = dsprites.DSprites.generate(8, seed=1).images.unsqueeze(1).float()
    features = encoder.get_features(images)
    assert features.shape == (8, 84) and torch.isfinite(features).all()
    assert features.std(dim=0).mean() > 0.01  # not collapsed to a constant (the random one is calibrated)
    if name.startswith("vae"):
        mu, logvar = encoder(images)
        assert torch.equal(features, mu)


def test_the_vae_decoder_reconstructs():
    encoder, decoder = pretrained.load_encoder("vae", "cpu"), pretrained.load_decoder("vae", "cpu")
    images = dsprites.DSprites.generate(64, seed=2).images.unsqueeze(1).float()
    with torch.no_grad():
        recon = torch.sigmoid(decoder(encoder.get_features(images)))
    blank = (images - images.mean()).abs().mean()
    assert recon.shape == images.shape
    assert (recon - images).abs().mean() < 0.5 * blank  # far better than a flat grey image


def test_a_frozen_encoder_stays_frozen_while_a_classifier_trains():
    encoder = pretrained.load_encoder("simclr", "cpu")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    data = dsprites.DSprites.generate(600, seed=3)
    train, test = dsprites.train_test_split(data, seed=3)
    training.train_classifier(encoder, data, train, test, num_epochs=2, batch_size=100, device="cpu")
    assert not encoder.training
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


def test_unknown_names_and_damaged_files_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(KeyError, match="simclr_2neg"):
        pretrained.load_encoder("simclr2")
    shutil.copytree(pretrained.WEIGHTS, tmp_path / "weights")
    monkeypatch.setattr(pretrained, "WEIGHTS", tmp_path / "weights")
    monkeypatch.setattr(pretrained, "MANIFEST", tmp_path / "weights" / "manifest.json")
    path = tmp_path / "weights" / "simclr.pt"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="python -m labkit.pretrained train simclr"):
        pretrained.load_encoder("simclr")
    path.unlink()
    assert any("simclr.pt is missing" in p for p in pretrained.verify())
    with pytest.raises(FileNotFoundError, match="train simclr"):
        pretrained.load_encoder("simclr")


@pytest.fixture(scope="module")
def table():
    """The lab's accuracy table from the shipped files on the 20k set (a minute or two on CPU)."""
    result = pretrained.accuracy_table(device="cpu")
    print("\n" + pretrained.format_table(result))
    return result


@pytest.mark.slow
def test_the_shipped_encoders_show_the_lab_pattern(table):
    """What the shipped encoders show (README table): supervised > SimCLR >> VAE > random, raw pixels; SimCLR
    far ahead with few labels and worse with two negatives; the bias experiment's pattern. Each bound keeps a
    margin of at least 3 points from what was measured (SimCLR: 92.8 all, 90.0 at 5%, 77.1 with two negatives,
    99.7 on the biased pool against 95.3 on its control)."""
    acc = {row: cols["all"] for row, cols in table.items()}
    assert acc["supervised"] > 90  # the original: 98.7
    assert acc["raw pixels"] < 50 and acc["random"] < 50  # 39.6 and 44.7
    assert acc["simclr"] > 88  # 97.5
    assert acc["simclr"] > acc["vae"] + 30  # 97.5 and 45.8
    assert acc["simclr_2neg"] < acc["simclr"] - 10  # 66.8: too few negatives
    assert table["supervised"]["5% labels"] < acc["supervised"] - 20  # end to end on 800 labels
    assert table["simclr"]["5% labels"] > table["supervised"]["5% labels"] + 20  # about 92 against 45
    # the biased pool: the supervised encoder and the VAE fall to chance, SimCLR keeps its control's accuracy
    assert table["supervised"]["biased"] < table["supervised"]["bias control"] - 20
    assert max(table[row]["biased"] for row in ("raw pixels", "random", "vae", "supervised")) < 40
    assert table["simclr"]["biased"] > table["vae"]["biased"] + 40
    assert table["simclr"]["biased"] > table["simclr"]["bias control"] - 3
    assert table["simclr"]["bias control"] > table["vae"]["bias control"] + 30


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="with Neuromatch's recipe on this CPU two negatives per anchor cost SimCLR 16 "
                   "points (93 -> 77), not the original's 31 (97.5 -> 66.8)")
def test_two_negatives_collapse_as_much_as_in_the_original(table):
    assert table["simclr_2neg"]["all"] < table["simclr"]["all"] - 20
