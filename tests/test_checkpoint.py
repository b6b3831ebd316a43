import pickle

import pytest
import torch

from gclib.checkpoint import atomic_write_bytes, load_checkpoint, load_hparams, save_checkpoint


def test_roundtrip_with_weights_only(tmp_path):
    net = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path / "c.pt", {"model": net.state_dict(), "step": 7, "history": [{"loss": 0.5}]},
                    {"lr": 2e-4, "name": "x"})
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["step"] == 7 and torch.equal(state["model"]["weight"], net.weight)
    assert load_hparams(tmp_path / "c.pt") == {"lr": 2e-4, "name": "x"}


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_loading_refuses_arbitrary_objects(tmp_path):
    torch.save({"x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(tmp_path / "evil.pt")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def boom(*a):
        raise OSError("disk full")
    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left behind
