import numpy as np
import pytest
import torch

from gclib import metrics


class Identity(torch.nn.Module):
    """A 'feature extractor' that returns its input: lets us feed known feature distributions."""
    num_features = 4

    def forward(self, x):
        return x


def test_fid_matches_the_closed_form_between_two_gaussians():
    rng = np.random.default_rng(0)
    d = 4
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.0, 2.0])
    a = rng.normal(size=(d, d))
    s1, s2 = np.eye(d), a @ a.T / d + 0.5 * np.eye(d)
    n = 40_000
    x1 = rng.multivariate_normal(mu1, s1, n)
    x2 = rng.multivariate_normal(mu2, s2, n)
    m = metrics.FeatureDistance(Identity(), n_subset=500, kid_subsets=5)
    m.update(torch.tensor(x1, dtype=torch.float32), real=True)
    m.update(torch.tensor(x2, dtype=torch.float32), real=False)
    expected = metrics.frechet_distance(mu1, s1, mu2, s2)
    assert m.compute()["fid"] == pytest.approx(expected, rel=0.03)
    assert expected > 5  # the two distributions are far apart, so the check is not trivially met


def test_kid_is_unbiased_near_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(0)
    same = metrics.FeatureDistance(Identity(), n_subset=200, kid_subsets=50)
    same.update(torch.randn(1000, 4, generator=g), real=True)
    same.update(torch.randn(1000, 4, generator=g), real=False)
    k_same = same.compute()
    diff = metrics.FeatureDistance(Identity(), n_subset=200, kid_subsets=50)
    diff.update(torch.randn(1000, 4, generator=g), real=True)
    diff.update(torch.randn(1000, 4, generator=g) + 0.5, real=False)
    k_diff = diff.compute()
    assert abs(k_same["kid"]) < 3 * k_same["kid_std"] + 1.0     # x1000 units
    assert k_diff["kid"] > 10 * max(abs(k_same["kid"]), 1.0)


def test_transposed_conv_is_counted_on_its_output():
    layer = torch.nn.Sequential(torch.nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1))
    # input 16x16 -> output 32x32; each output pixel of each output channel costs C_in * k * k MACs
    assert metrics.count_macs(layer, 16, in_channels=8) == 32 * 32 * 4 * 8 * 3 * 3


def test_offline_extractor_is_deterministic_and_sees_degradations():
    a = metrics.train_offline_extractor(steps=4, n_images=32, progress=False)
    b = metrics.train_offline_extractor(steps=4, n_images=32, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    images = torch.randint(0, 256, (5, 3, 48, 48), dtype=torch.uint8)
    feats = a(images)
    assert feats.shape == (5, metrics.OfflineFeatures.num_features)
    n_bytes = sum(p.numel() for p in a.parameters()) * 4
    assert n_bytes < 3e6  # a few MB at most


def test_offline_extractor_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GCLIB_DATA", str(tmp_path))
    monkeypatch.setattr(metrics, "train_offline_extractor",
                        lambda **k: metrics.OfflineFeatures().eval())
    first = metrics.load_offline_extractor(progress=False)
    assert metrics.offline_extractor_path().exists()
    monkeypatch.setattr(metrics, "train_offline_extractor", lambda **k: pytest.fail("trained twice"))
    again = metrics.load_offline_extractor(progress=False)
    assert all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), again.state_dict().values()))


def test_generator_scorer_ranks_a_copy_of_the_targets_best():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    extractor = metrics.OfflineFeatures().eval()
    targets = torch.rand(40, 3, 32, 32, generator=g) * 2 - 1
    inputs = targets.clone()

    class Noisy(torch.nn.Module):
        def __init__(self, amount):
            super().__init__()
            self.amount = amount
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return (x + self.amount * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)

    scorer = metrics.GeneratorScorer(inputs, targets, extractor)
    assert scorer(Noisy(0.0))["fid"] < scorer(Noisy(1.0))["fid"]


def test_l1_to_target_counts_grey_levels():
    class Shift(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return x + 10 / 127.5

    targets = torch.zeros(4, 3, 8, 8)                 # grey level 127.5 -> rounds to 128
    assert metrics.l1_to_target(Shift(), targets, targets) == pytest.approx(10, abs=1)


def test_unknown_extractor():
    with pytest.raises(ValueError, match="offline"):
        metrics.get_extractor("vgg")
