"""Export a compressed generator (notebook 04) in three forms, each reloadable and checked against the model.

- ``NAME.pt``: the weights and the settings to rebuild the network with gclib (family, config, structure, MACs, and
  whatever the caller adds), in one file read with ``weights_only=True``: :func:`load_exported`.
- ``NAME.pt2``: a ``torch.export`` program, the graph PyTorch deploys from (no gclib needed): ``torch.export.load``.
- ``NAME.onnx``: ONNX, for ONNX Runtime and other engines (no PyTorch needed).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from .artifacts import atomic_write_bytes, load_artifact
from .families import get_family


def export(G: nn.Module, folder, name: str, image_size: int, family: str = "resnet", extra: dict | None = None
           ) -> dict[str, Path]:
    """Write ``G`` (a family's compressed generator with ``config`` and ``arch``) as ``NAME.pt``, ``NAME.pt2``
    and ``NAME.onnx`` in ``folder``; returns the paths."""
    from .metrics import count_macs
    folder = Path(folder)
    G = G.eval()
    fam = get_family(family)
    device = next(G.parameters()).device
    example = tuple(x.to(device) for x in fam.export_inputs(2, image_size, **G.arch))   # what a deployment feeds
    counted = tuple(x.to(device) for x in fam.example_inputs(1, image_size, **G.arch))  # what MACs are counted on
    meta = {"family": family, "config": G.config, "arch": G.arch, "image_size": image_size,
            "inputs": list(fam.export_names), "GMACs": count_macs(G, inputs=counted) / 1e9, **(extra or {})}
    paths = {"weights": folder / f"{name}.pt", "program": folder / f"{name}.pt2", "onnx": folder / f"{name}.onnx"}
    # all three are made in memory first and written only when all three succeeded: a failed re-export leaves the
    # previous set whole, never a mix of new and old files
    blobs = {}
    buffer = io.BytesIO()
    torch.save({"meta": meta, "weights": G.state_dict()}, buffer)
    blobs["weights"] = buffer.getvalue()
    batch = torch.export.Dim("batch")                             # any batch size, not only the example's
    program = torch.export.export(G, example, dynamic_shapes=tuple({0: batch} for _ in example))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    blobs["program"] = buffer.getvalue()
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the exporter reports its version choices
        warnings.simplefilter("ignore")
        torch.onnx.export(G, example, buffer, input_names=list(fam.export_names), output_names=["B"], dynamo=False,
                          dynamic_axes={**{name: {0: "batch"} for name in fam.export_names}, "B": {0: "batch"}})
    blobs["onnx"] = buffer.getvalue()
    for kind, path in paths.items():
        atomic_write_bytes(path, blobs[kind])
    return paths


def load_exported(folder, name: str, device="cpu") -> nn.Module:
    """The generator written by :func:`export`, rebuilt from its settings and weights."""
    content = load_artifact(Path(folder) / f"{name}.pt", device)
    meta = content["meta"]
    arch = meta.get("arch", {"n_blocks": meta.get("n_blocks")})   # exports before 'arch' held only n_blocks
    G = get_family(meta["family"]).student(meta["config"], **arch)
    G.load_state_dict(content["weights"])
    return G.to(device).eval()


def exported_outputs(paths: dict[str, Path], inputs: torch.Tensor | tuple[torch.Tensor, ...]
                     ) -> dict[str, torch.Tensor]:
    """Run ``inputs`` (the images, or the family's export inputs in order, e.g. MUNIT's images and style codes)
    through each exported form, reloaded from disk: the torch.export program and ONNX Runtime."""
    import onnxruntime as ort
    inputs = tuple(x.cpu() for x in (inputs if isinstance(inputs, (tuple, list)) else (inputs,)))
    program = torch.export.load(str(paths["program"])).module()
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    feed = {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)}
    with torch.no_grad():
        return {"torch.export": program(*inputs), "ONNX Runtime": torch.from_numpy(session.run(["B"], feed)[0])}
