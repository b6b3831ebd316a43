"""The MUNIT family behind the :class:`~gclib.families.base.Family` contract (networks:
:mod:`gclib.families.munit.networks`).

Config ``c0_..._c9`` = ``[style, stem, down_1, down_2, content_res_0, content_res_1, adain_res_0, adain_res_1, up_1,
up_2]``; the official choice set (Fast GAN Compression's ``channels-64``) is {16, 24, ..., 64} for every entry
(7^10 = 282,475,249 sub-networks). The generator's input is an image; with no style code given it draws in the
image's own style (the style encoder's reading), which is how MACs are counted (with the style encoder).
"""
from __future__ import annotations

import torch

from ...nn.elastic import slice_state_dict, strongest_channels
from ..base import Family, image_hw
from .networks import (ENTRIES, MLP_DIM, STYLE_DIM, MUNITGenerator, SuperMobileMUNITGenerator, adain_rows,
                       config_widths, student, teacher, teacher_widths)

CHANNELS_64 = (16, 24, 32, 40, 48, 56, 64)


def generator_macs(w: dict, image_size, separable: bool, input_nc: int = 3) -> int:
    """MACs as torchprofile counts them: every conv ``P C_out C_in/groups k^2`` (P output pixels), every linear layer
    ``C_out C_in``, one per output value of each AdaIN and LayerNorm product, of the style encoder's global mean and
    of each LayerNorm's mean; parameter-free InstanceNorms, ReLUs, additions and upsampling nothing."""
    h, wd = image_hw(image_size)
    full, half, quarter = h * wd, (h // 2) * (wd // 2), (h // 4) * (wd // 4)
    s = w["style"]                                                              # style encoder, dense, no norms
    macs = full * s * input_nc * 49
    cin, size = s, (h, wd)
    for out in (2 * s, 4 * s, 4 * s, 4 * s):                                    # 4x4 stride-2 convs
        size = (size[0] // 2, size[1] // 2)
        macs += size[0] * size[1] * out * cin * 16
        cin = out
    macs += cin + STYLE_DIM * cin                                               # global mean, 1x1 to the style
    code = w["down_2"]
    macs += full * w["stem"] * input_nc * 49 + half * w["down_1"] * w["stem"] * 16 + quarter * code * w["down_1"] * 16

    def conv(p: int, cin: int, cout: int, k: int) -> int:                      # a residual or upsampling conv
        return p * (cin * k * k + cout * cin) if separable else p * cout * cin * k * k

    for mid in w["content_res"]:
        macs += conv(quarter, code, mid, 3) + conv(quarter, mid, code, 3)
    for mid in w["adain_res"]:
        macs += conv(quarter, code, mid, 3) + conv(quarter, mid, code, 3) + quarter * (mid + code)   # AdaIN products
    up_1, up_2 = w["ups"]
    macs += conv(half, code, up_1, 5) + half * up_1 + 1                         # x2, 5x5, LayerNorm product and mean
    macs += conv(full, up_1, up_2, 5) + full * up_2 + 1
    macs += full * input_nc * up_2 * 49                                         # 7x7 to RGB
    adain = 2 * sum(mid + code for mid in w["adain_res"])                       # the MLP's outputs
    return macs + STYLE_DIM * MLP_DIM + MLP_DIM * MLP_DIM + MLP_DIM * adain


class MunitFamily(Family):
    name = "munit"
    entries = ENTRIES
    default_choices = CHANNELS_64
    style_dim = STYLE_DIM           # a generator's second input: evaluations draw one code per image

    def arch(self, preset) -> dict:
        return {"input_nc": 3}

    def config_macs(self, config, image_size, input_nc: int = 3) -> int:
        return generator_macs(config_widths(self.parse(config)), image_size, True, input_nc)

    def teacher_macs(self, ngf: int, image_size, input_nc: int = 3) -> int:
        return generator_macs(teacher_widths(ngf), image_size, False, input_nc)

    def teacher(self, ngf: int = 64, input_nc: int = 3) -> MUNITGenerator:
        return teacher(ngf, input_nc)

    def student(self, config, input_nc: int = 3) -> MUNITGenerator:
        return student(config, input_nc)

    def supernet(self, max_width: int, input_nc: int = 3) -> SuperMobileMUNITGenerator:
        return SuperMobileMUNITGenerator(max_width, input_nc)

    def extract(self, supernet: SuperMobileMUNITGenerator, config=None) -> MUNITGenerator:
        """First-k slices of every conv and norm; the MLP's last layer keeps, for each AdaIN, the rows of its first
        k shifts and scales (:func:`~gclib.families.munit.networks.adain_rows`)."""
        sub = student(config if config is not None else supernet.config, **supernet.arch)
        state = slice_state_dict(supernet.state_dict(), sub.state_dict())
        rows = adain_rows([m.num_features for m in supernet.adain], [m.num_features for m in sub.adain])
        last = "mlp.model.2.fc"
        state[f"{last}.weight"] = supernet.state_dict()[f"{last}.weight"][rows].clone()
        state[f"{last}.bias"] = supernet.state_dict()[f"{last}.bias"][rows].clone()
        sub.load_state_dict(state)
        return sub.to(next(supernet.parameters()).device)

    def example_inputs(self, batch: int, image_size, input_nc: int = 3, **_) -> tuple[torch.Tensor]:
        return (torch.rand(batch, input_nc, *image_hw(image_size)) * 2 - 1,)

    export_names = ("A", "style")

    def export_inputs(self, batch: int, image_size, input_nc: int = 3, **_) -> tuple[torch.Tensor, torch.Tensor]:
        """An exported MUNIT draws the image in the style code it is given: (images, codes (B, 8, 1, 1))."""
        return (*self.example_inputs(batch, image_size, input_nc), torch.randn(batch, STYLE_DIM, 1, 1))

    def distill_points(self, net) -> list[str]:
        return ["enc_content"]                                  # the content code (official: through a 1x1 adapter)

    def distill_widths(self, net) -> list[int]:
        return [net.enc_content.output_dim]

    @torch.no_grad()
    def init_from_teacher(self, student, teacher, by_importance: bool = False) -> list[torch.Tensor]:
        """L1-norm channel selection where teacher and student layers are alike (dense in both): the style encoder,
        the content encoder's stem and downsamplings, and the MLP, whose last layer keeps the rows of the AdaIN
        channels kept (the content code's channels for the second norm of each block, the first k for the middles).
        The separable residual and upsampling convs and the output conv keep their init. Returns the teacher
        channels of the content code."""
        def top(weight: torch.Tensor, k: int) -> torch.Tensor:
            return strongest_channels(weight.abs().flatten(1).sum(1), k, by_importance)

        def chain(pairs, kept_in: torch.Tensor, ordered_last: bool = False) -> torch.Tensor:
            for i, (s, t) in enumerate(pairs):
                w = t.weight[:, kept_in]
                ordered = ordered_last and i == len(pairs) - 1       # the style code's 8 numbers keep their order
                out = torch.arange(s.out_channels) if ordered else top(w, s.out_channels)
                s.weight.copy_(w[out])
                s.bias.copy_(t.bias[out])
                kept_in = out
            return kept_in

        rgb = torch.arange(teacher.enc_style.model[0].conv.in_channels)
        chain([(student.enc_style.model[i].conv, teacher.enc_style.model[i].conv) for i in range(5)]
              + [(student.enc_style.model[6], teacher.enc_style.model[6])], rgb, ordered_last=True)
        code = chain([(student.enc_content.model[i].conv, teacher.enc_content.model[i].conv) for i in range(3)], rgb)
        for i in (0, 1):
            student.mlp.model[i].fc.weight.copy_(teacher.mlp.model[i].fc.weight)
            student.mlp.model[i].fc.bias.copy_(teacher.mlp.model[i].fc.bias)
        rows, offset = [], 0
        for k, (s, t) in enumerate(zip(student.adain, teacher.adain)):
            kept = code if k % 2 else torch.arange(s.num_features)     # each block: its middle, then the code
            rows += [offset + kept, offset + t.num_features + kept]
            offset += 2 * t.num_features
        rows = torch.cat(rows)
        student.mlp.model[2].fc.weight.copy_(teacher.mlp.model[2].fc.weight[rows])
        student.mlp.model[2].fc.bias.copy_(teacher.mlp.model[2].fc.bias[rows])
        return [code]


MUNIT_FAMILY = MunitFamily()
