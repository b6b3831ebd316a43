import multiprocessing
import pickle

import pytest
import torch

from gclib.artifacts import (ArtifactBusy, artifact_lock, atomic_write_bytes, load_artifact, save_artifact,
                             set_aside)


def test_roundtrip_with_weights_only(tmp_path):
    net = torch.nn.Linear(3, 2)
    save_artifact(tmp_path / "c.pt", {"weights": net.state_dict(), "stage": {"lr": 2e-4, "name": "x"}, "step": 7})
    state = load_artifact(tmp_path / "c.pt")
    assert state["step"] == 7 and torch.equal(state["weights"]["weight"], net.weight)
    assert state["stage"] == {"lr": 2e-4, "name": "x"}            # settings live in the same file as the weights


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_loading_refuses_arbitrary_objects(tmp_path):
    torch.save({"x": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_artifact(tmp_path / "evil.pt")


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


def test_set_aside_never_overwrites(tmp_path):
    names = set()
    for content in (b"1", b"2", b"3"):
        (tmp_path / "a.pt").write_bytes(content)
        names.add(set_aside(tmp_path / "a.pt", "stale").name)
    assert len(names) == 3 and not (tmp_path / "a.pt").exists()
    assert sorted((tmp_path / n).read_bytes() for n in names) == [b"1", b"2", b"3"]
    assert all(n.startswith("a.stale-") and n.endswith(".pt") for n in names)


def _hold_lock(path, ready, release):
    with artifact_lock(path):
        ready.set()
        release.wait(30)


def test_a_second_run_on_the_same_artifact_is_refused(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold_lock, args=(tmp_path / "x.pt", ready, release))
    other.start()
    try:
        assert ready.wait(60)
        with pytest.raises(ArtifactBusy, match=rf"x.pt is being trained by another run \(process {other.pid}\)"):
            with artifact_lock(tmp_path / "x.pt"):
                pass
    finally:
        release.set()
        other.join(30)
    with artifact_lock(tmp_path / "x.pt"):                    # free again once the other run ended
        pass
