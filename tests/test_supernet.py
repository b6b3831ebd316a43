import random

import pytest
import torch

from gclib.metrics import count_macs
from gclib.mobile import FAST_CYCLEGAN_CHOICES, MobileResnetGenerator, encode_config
from gclib.models import init_weights
from gclib.supernet import SuperMobileResnetGenerator, extract_subnet


def _random_configs(n, choices, seed=0):
    rng = random.Random(seed)
    return [encode_config([rng.choice(choices) for _ in range(8)]) for _ in range(n)]


def test_full_width_supernet_is_the_mobile_generator():
    torch.manual_seed(0)
    sup = init_weights(SuperMobileResnetGenerator(ngf=16, n_blocks=3)).eval()
    plain = MobileResnetGenerator(ngf=16, n_blocks=3).eval()
    plain.load_state_dict(sup.state_dict())                       # same names and shapes
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(sup(x), plain(x), atol=1e-6)


@pytest.mark.parametrize("config", _random_configs(12, (16, 12, 8, 4)))
def test_extracted_subnet_equals_the_supernet_slice(config):
    torch.manual_seed(0)
    sup = init_weights(SuperMobileResnetGenerator(ngf=16, n_blocks=3)).eval()
    sub = extract_subnet(sup, config).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = sup.set_config(config)(x)
        assert (sub(x) - expected).abs().max() < 1e-5
    assert count_macs(sub, 32) == count_macs(MobileResnetGenerator(config=config, n_blocks=3), 32)
    assert count_macs(sub, 32) < count_macs(MobileResnetGenerator(ngf=16, n_blocks=3), 32) or set(config.split("_")) == {"16"}


def test_supernet_at_paper_widths_extracts_guide_configs():
    sup = SuperMobileResnetGenerator(ngf=64)
    sub = extract_subnet(sup, "16_16_24_16_32_64_16_24")
    assert count_macs(sub, 256) / 1e9 == pytest.approx(2.62, abs=0.01)     # GUIDE: Fast horse2zebra


def test_weights_are_shared_first_k():
    sup = SuperMobileResnetGenerator(ngf=16, n_blocks=3)
    sub = extract_subnet(sup, "8_8_8_8_8_8_8_8")
    assert torch.equal(sub.model[1].weight, sup.model[1].weight[:8])
    assert torch.equal(sub.model[4].weight, sup.model[4].weight[:16, :8])       # down1: 2*8 out of 2*16, 8 in


def test_too_wide_config_says_the_limit():
    with pytest.raises(ValueError, match="at most 16"):
        SuperMobileResnetGenerator(ngf=16, n_blocks=3).set_config("32_16_16_16_16_16_16_16")
