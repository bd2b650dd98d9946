import numpy as np
import pytest
import torch

from bench.robustness import CORRUPTIONS, attack, corrupt, expected_calibration_error, summarise


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    x = np.zeros((8, 1, 28, 28), np.uint8)
    x[:, :, 6:22, 8:20] = rng.integers(100, 255, (8, 1, 16, 12))  # a bright garment-like blob
    return x


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corruptions_are_seeded_uint8_and_grow_with_severity(kind, images):
    mild, strong = corrupt(images, kind, 1, seed=3), corrupt(images, kind, 3, seed=3)
    assert mild.dtype == np.uint8 and mild.shape == images.shape
    assert np.array_equal(mild, corrupt(images, kind, 1, seed=3))
    diff = lambda a: np.abs(a.astype(int) - images).mean()  # noqa: E731
    assert 0 < diff(mild) < diff(strong)


def test_ece_of_perfectly_calibrated_and_overconfident_models():
    labels = np.array([0, 1, 0, 1])
    certain_right = np.log(np.array([[1, 1e-9], [1e-9, 1], [1, 1e-9], [1e-9, 1]]))
    assert expected_calibration_error(certain_right, labels)["ece"] == pytest.approx(0, abs=1e-6)
    certain_half_wrong = np.log(np.array([[1, 1e-9], [1, 1e-9], [1, 1e-9], [1, 1e-9]]))
    result = expected_calibration_error(certain_half_wrong, labels)
    assert result["ece"] == pytest.approx(0.5, abs=1e-6) and result["mean_confidence"] == pytest.approx(1.0)


def test_attacks_stay_within_budget_and_hurt_the_attacked_model(images):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()  # input-sensitive, unlike an untrained CNN
    with torch.no_grad():
        labels = model((torch.from_numpy(images.astype(np.float32)) / 255 - 0.3) / 0.35).argmax(1).numpy()
    for steps in (1, 5):
        adv = attack(model, images, labels, (0.3,), (0.35,), epsilon=0.1, steps=steps)
        assert adv.dtype == np.uint8
        assert np.abs(adv.astype(int) - images).max() <= round(0.1 * 255) + 1
        with torch.no_grad():
            pred = model((torch.from_numpy(adv.astype(np.float32)) / 255 - 0.3) / 0.35).argmax(1).numpy()
        assert (pred == labels).mean() < 1.0


def test_an_attack_in_chunks_crafts_what_one_batch_would(images, monkeypatch):
    """Chunking is a speed measure only: each image's attack depends on its own gradient and its
    own share of the random start, never on which images share its chunk."""
    from bench import robustness

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    labels = np.arange(len(images)) % 10
    whole = attack(model, images, labels, (0.3,), (0.35,), epsilon=0.1, steps=5, seed=1)
    monkeypatch.setattr(robustness, "ATTACK_CHUNK", 3)  # 8 images: chunks of 3, 3 and 2
    assert np.array_equal(attack(model, images, labels, (0.3,), (0.35,), epsilon=0.1, steps=5, seed=1), whole)
    assert attack(model, images[:0], labels[:0], (0.3,), (0.35,), epsilon=0.1, steps=5).shape == (0, 1, 28, 28)


def test_summarise_separates_corruption_and_adversarial_sets():
    block = summarise({"blur-s1": 0.8, "blur-s3": 0.6, "fgsm-eps0.1": 0.2}, 0.9, {"mean_corruption_top1": 0.8})
    assert block["mean_corruption_top1"] == pytest.approx(0.7)
    assert block["corruption_drop_vs_clean"] == pytest.approx(0.2)
    assert block["adversarial_transfer_top1"] == {"fgsm-eps0.1": 0.2}
    assert block["mean_corruption_top1_relative_to_baseline"] == pytest.approx(0.875)
