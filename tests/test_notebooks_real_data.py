"""Bring your own data: a folder of images in either official layout, any size, runs notebooks 01-04 through
`gclib run --dataset-root` (smoke preset, small images the test makes; nothing is downloaded)."""
import json

import numpy as np
import pytest
from PIL import Image

from gclib import runner
from gclib.cli import main


def _aligned_folder(root, n_train=12, n_test=4, size=(48, 24)):
    """pix2pix layout, A|B side by side, 48x24 (halves 24x24, not the preset's size): A a coloured block map, B the
    same map shaded, so there is something to learn."""
    rng = np.random.default_rng(0)
    for phase, n in (("train", n_train), ("val", n_test)):        # train/val only, like edges2shoes
        (root / phase).mkdir(parents=True)
        for i in range(n):
            a = np.zeros((size[1], size[1], 3), np.uint8)
            for _ in range(3):
                y, x = rng.integers(0, size[1] - 6, 2)
                a[y:y + 6, x:x + 6] = rng.integers(0, 255, 3)
            b = (a * 0.6 + 60).astype(np.uint8)
            Image.fromarray(np.concatenate([a, b], axis=1)).save(root / phase / f"{i:03d}.png")
    return root


def _unaligned_folder(root, n=8, size=20):
    rng = np.random.default_rng(1)
    for folder, base in (("trainA", 60), ("trainB", 180), ("testA", 60), ("testB", 180)):
        (root / folder).mkdir(parents=True)
        for i in range(n if folder.startswith("train") else 4):
            img = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / folder / f"{i}.jpg")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["aligned", "unaligned"])
def test_the_suite_runs_on_a_folder_of_your_own_images(tmp_path, layout):
    root = (_aligned_folder if layout == "aligned" else _unaligned_folder)(tmp_path / f"my_{layout}")
    out = tmp_path / "runs"
    code = main(["run", "--preset", "smoke", "--only", "01,02,03,04", "--dataset-root", str(root), "--out", str(out),
                 "--set", "data.n_heldout=2", "--set", "data.image_size=32", "--set", "data.load_size=36"])
    assert code == 0
    task = f"my_{layout}"
    record = json.loads((out / "results" / f"01_teacher_training_{task}.json").read_text())
    assert record["resolution"] == 32 and "teacher FID (offline)" in record
    assert ("teacher L1 to target (0-255)" in record) == (layout == "aligned")     # distances only when paired
    searched = json.loads((out / f"search_{task}.json").read_text())
    assert searched["GMACs"] > 0 and (out / f"searched_{task}.onnx").exists()


def test_run_checks_its_settings_and_dataset_before_any_notebook(tmp_path, capsys):
    assert main(["run", "--preset", "smoke", "--set", "teacher.steps", "--out", str(tmp_path)]) == 2
    assert "write FIELD=VALUE" in capsys.readouterr().err
    assert main(["run", "--preset", "paper", "--out", str(tmp_path)]) == 2
    assert "--dataset-root" in capsys.readouterr().err
    assert main(["run", "--preset", "smoke", "--dataset-root", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "notebooks").exists()                                  # nothing ran


@pytest.mark.slow
def test_the_gpu_preset_runs_at_tiny_size_on_the_cpu(tmp_path):
    """Its GPU settings (bf16 autocast, channels_last, cuDNN benchmark, fused Adam) exercised on the CPU, tiny."""
    tiny = {"data.image_size": 32, "data.n_train": 16, "data.n_heldout": 8, "data.n_test": 8, "data.batch_size": 4,
            "teacher.steps": 3, "teacher.seeds": "[0]", "student.steps": 3, "student.seeds": "[0]", "eval_every": 3,
            "teacher.ngf": 16, "teacher.n_blocks": 3, "teacher.ndf": 16, "student.ngf": 8,
            "supernet.choices": "[8,16]", "supernet.unpaired_choices": "[8,16]", "search.budget_widths": "[8]"}
    args = [a for k, v in tiny.items() for a in ("--set", f"{k}={v}")]
    assert main(["run", "--preset", "gpu", "--only", "01,02", "--tasks", "facades", "--out", str(tmp_path), *args]) == 0
    record = json.loads((tmp_path / "results" / "02_distillation_facades.json").read_text())
    assert record["preset"] == "gpu" and record["resolution"] == 32
