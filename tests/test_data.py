import hashlib
import http.server
import io
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gclib import data as gdata
from gclib.data import (AlignedFolder, DatasetError, UnalignedFolder, extract, fetch, generate_embedded,
                        load_embedded, open_real_dataset)
from gclib.presets import get_preset


# -- embedded tasks -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["facades", "stripes"])
def test_embedded_is_deterministic_and_seeded(task):
    a = generate_embedded(task, "train", 6, 32, seed=3)
    b = generate_embedded(task, "train", 6, 32, seed=3)
    c = generate_embedded(task, "train", 6, 32, seed=4)
    assert a["A"].shape == a["B"].shape == (6, 32, 32, 3) and a["A"].dtype == np.uint8
    assert np.array_equal(a["A"], b["A"]) and np.array_equal(a["B"], b["B"])
    assert not np.array_equal(a["B"], c["B"])


@pytest.mark.parametrize("size", [32, 100, 256])
def test_embedded_any_resolution(size):
    out = generate_embedded("facades", "test", 2, size)
    assert out["A"].shape == (2, size, size, 3)


def test_splits_share_no_image():
    train = generate_embedded("facades", "train", 40, 32)["B"].reshape(40, -1)
    test = generate_embedded("facades", "test", 40, 32)["B"].reshape(40, -1)
    assert not any((train == t).all(axis=1).any() for t in test)


def test_paired_target_is_a_function_of_the_label_map():
    # Same label map must always render the same photo: the paired task has a right answer.
    d = generate_embedded("facades", "train", 200, 32, seed=0)
    seen = {}
    for a, b in zip(d["A"], d["B"]):
        key = a.tobytes()
        if key in seen:
            assert np.array_equal(seen[key], b)
        seen[key] = b
    assert len(seen) > 150  # and the layouts vary


def test_unpaired_domains_differ_in_stripes():
    d = generate_embedded("stripes", "train", 8, 64)
    # domain B has black-and-white stripes: far more near-black pixels than the brown animals of domain A
    dark = lambda x: (x.max(axis=-1) < 50).mean()
    assert dark(d["B"]) > 3 * dark(d["A"])


def test_unpaired_oracle_is_A_redrawn_with_stripes():
    d = generate_embedded("stripes", "test", 12, 32, seed=1)
    plain, striped = gdata.ANIMAL_CLASSES.index("plain animal"), gdata.ANIMAL_CLASSES.index("striped animal")
    animal = d["label_A"] == plain
    # outside the animal the oracle is A's scene, pixel for pixel; on it, a coat like domain B's (black and white)
    assert np.array_equal(d["target"][~animal], d["A"][~animal])
    assert not np.array_equal(d["target"][animal], d["A"][animal])
    coat = d["target"][animal].astype(int)
    assert (coat.max(-1) - coat.min(-1)).mean() < 12        # grey: no brown left
    # the oracle is drawn where label_target says "striped animal", and only A's stream decides it
    labels = gdata.embedded_labels("stripes", d)
    assert torch.equal(labels["label_target"] == striped, torch.from_numpy(animal))
    again = generate_embedded("stripes", "test", 12, 32, seed=1)
    assert np.array_equal(again["target"], d["target"]) and np.array_equal(again["B"], d["B"])

def test_embedded_errors():
    with pytest.raises(ValueError, match="32..256"):
        generate_embedded("facades", "train", 1, 16)
    with pytest.raises(ValueError, match="facades"):
        generate_embedded("horses", "train", 1, 32)
    with pytest.raises(ValueError, match="heldout"):
        generate_embedded("facades", "val", 1, 32)


def test_embedded_cache_roundtrip(tmp_path):
    first = load_embedded("stripes", "heldout", 3, 32, data_dir=tmp_path)
    files = list((tmp_path / "embedded").glob("*.npz"))
    assert len(files) == 1
    again = load_embedded("stripes", "heldout", 3, 32, data_dir=tmp_path)
    assert np.array_equal(first["A"], again["A"])


def test_each_task_caches_under_its_own_data_version(tmp_path):
    """A change to what one task draws bumps that task's version alone: the others keep their cache names."""
    from gclib.data.embedded import DATA_VERSIONS
    for task in ("facades", "coats"):
        load_embedded(task, "heldout", 2, 32, data_dir=tmp_path)
    names = sorted(p.name for p in (tmp_path / "embedded").glob("*.npz"))
    assert names == [f"coats_heldout_32px_2_s0_v{DATA_VERSIONS['coats']}.npz",
                     f"facades_heldout_32px_2_s0_v{DATA_VERSIONS['facades']}.npz"]
    assert DATA_VERSIONS["coats"] != DATA_VERSIONS["facades"]


def test_load_task_gives_three_splits():
    cfg = get_preset("smoke")
    splits = gdata.load_task("facades", cfg)
    assert splits.paired is True and isinstance(splits.train, torch.utils.data.Dataset)
    d = cfg.data
    for split, n in (("train", d.n_train), ("heldout", d.n_heldout), ("test", d.n_test)):
        assert getattr(splits, split).A.shape == (n, 3, d.image_size, d.image_size)
        assert -1 <= getattr(splits, split).A.min() and getattr(splits, split).A.max() <= 1


# -- real dataset layouts ---------------------------------------------------------------------------------------------
def _img(path: Path, color, size=(16, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def make_aligned(root: Path, n=3, offset=0):
    for p, phase in enumerate(("train", "test")):
        for i in range(n):
            shade = 8 * i + 100 * p + offset                              # every image its own (splits are disjoint)
            ab = Image.new("RGB", (32, 16), (255, shade, 0))
            ab.paste(Image.new("RGB", (16, 16), (0, shade, 255)), (16, 0))  # A red | B blue
            (root / phase).mkdir(parents=True, exist_ok=True)
            ab.save(root / phase / f"{i}.jpg", quality=100)
    return root


def make_unaligned(root: Path):
    for folder, color in (("trainA", (255, 0, 0)), ("trainB", (0, 255, 0)), ("testA", (255, 0, 0)),
                          ("testB", (0, 255, 0))):
        for i in range(2 if folder.endswith("A") else 3):
            _img(root / folder / f"{i}.png", (color[0], color[1], 8 * i + (100 if folder.startswith("test") else 0)))
    return root


def test_aligned_loader_and_direction(tmp_path):
    root = make_aligned(tmp_path / "facades")
    item = AlignedFolder(root, "train", load_size=16, crop_size=16, flip=False)[0]
    assert item["A"].shape == (3, 16, 16)
    assert item["A"][0].mean() > 0.9 and item["B"][2].mean() > 0.9         # A red, B blue
    swapped = AlignedFolder(root, "train", "BtoA", load_size=16, crop_size=16, flip=False)[0]
    assert swapped["A"][2].mean() > 0.9 and swapped["B"][0].mean() > 0.9


def test_paper_augmentation_crops_the_same_window_from_both_halves(tmp_path):
    root = tmp_path / "grad"
    (root / "train").mkdir(parents=True)
    ramp = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    half = np.stack([ramp] * 3, -1)
    Image.fromarray(np.concatenate([half, half], 1)).save(root / "train" / "0.png")
    ds = AlignedFolder(root, "train", load_size=36, crop_size=32, flip=True, seed=1)
    for _ in range(5):
        item = ds[0]
        assert item["A"].shape == (3, 32, 32)
        assert torch.allclose(item["A"], item["B"])  # same crop and flip on A and B


def test_unaligned_loader(tmp_path):
    root = make_unaligned(tmp_path / "h2z")
    ds = open_real_dataset(root, "train", load_size=16, crop_size=16)
    assert isinstance(ds, UnalignedFolder) and len(ds) == 3
    item = ds[0]
    assert item["A"][0].mean() > 0.9 and item["B"][1].mean() > 0.9


def test_missing_dataset_names_layout_and_download_command(tmp_path):
    with pytest.raises(DatasetError) as e:
        open_real_dataset(tmp_path / "edges2shoes")
    msg = str(e.value)
    assert "python -m gclib data download edges2shoes" in msg and "A|B" in msg and "trainA" in msg


def test_wrong_layout_is_explained(tmp_path):
    root = make_unaligned(tmp_path / "h2z")
    with pytest.raises(DatasetError, match="unaligned .*UnalignedFolder"):
        AlignedFolder(root, "train")
    aligned = make_aligned(tmp_path / "fac")
    with pytest.raises(DatasetError, match="aligned .*AlignedFolder"):
        UnalignedFolder(aligned, "train")


def test_empty_folder(tmp_path):
    (tmp_path / "x" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no images"):
        AlignedFolder(tmp_path / "x")


def test_corrupt_image_names_the_file(tmp_path):
    root = make_aligned(tmp_path / "fac")
    bad = root / "train" / "1.jpg"
    bad.write_bytes(b"not a jpeg at all")
    ds = AlignedFolder(root, "train", load_size=16, crop_size=16)
    with pytest.raises(DatasetError, match=r"cannot read image .*1\.jpg"):
        ds[1]


def test_real_dataset_through_load_task(tmp_path):
    root = make_aligned(tmp_path / "fac")
    cfg = get_preset("smoke", {"data.image_size": 32, "data.load_size": 36, "data.dataset_root": str(root),
                               "data.n_heldout": 1})
    splits = gdata.load_task("ignored", cfg)
    assert splits.paired and len(splits.train) == 2 and len(splits.heldout) == 1   # held-out carved from train
    assert splits.test.A.shape == (3, 3, 32, 32)
    batch = splits.train.batch(torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    assert batch["A"].shape == (2, 3, 32, 32)                        # random 32x32 crops of the 36x36 resize
    again = splits.train.batch(torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    assert torch.equal(batch["A"], again["A"])                       # the step's generator fixes the crops


def test_the_held_out_split_is_never_the_test_split(tmp_path):
    """Datasets without a val folder of their own (edges2shoes, maps, cityscapes: train/val; horse2zebra: train/test)
    get a held-out split carved from train: disjoint from the training images, the same files for every seed."""
    root = make_aligned(tmp_path / "shoes", n=10)
    full = AlignedFolder(root, "train").files
    held = AlignedFolder(root, "train", holdout=3, part="heldout").files
    rest = AlignedFolder(root, "train", holdout=3, part="train", seed=5).files
    assert len(held) == 3 and not set(held) & set(rest) and sorted(held + rest) == sorted(full)
    cfg = get_preset("smoke", {"data.dataset_root": str(root), "data.n_heldout": 3})
    splits = gdata.load_task("shoes", cfg, seed=1)
    assert (len(splits.train), len(splits.heldout), len(splits.test)) == (7, 3, 10)
    # train/val only (val is then the test split): the held-out split still comes from train
    (root / "test").rename(root / "val")
    splits = gdata.load_task("shoes", cfg)
    assert (len(splits.train), len(splits.heldout), len(splits.test)) == (7, 3, 10)
    # a dataset with val *and* test folders keeps its own val as the held-out split
    make_aligned(tmp_path / "fac", n=4)
    (tmp_path / "fac" / "test").rename(tmp_path / "fac" / "val")
    make_aligned(tmp_path / "fac", n=2, offset=50)                   # train (overwritten) and test
    fac = cfg.override({"data.dataset_root": str(tmp_path / "fac")})
    splits = gdata.load_task("fac", fac)
    assert (len(splits.train), len(splits.heldout), len(splits.test)) == (4, 4, 2)
    # a val folder that copies test images would let held-out decisions be read on test: refused, named
    shutil.copy(tmp_path / "fac" / "test" / "0.jpg", tmp_path / "fac" / "val" / "copy.jpg")
    with pytest.raises(DatasetError, match=r"1 held-out images \(.*fac/val\) are also test images"):
        gdata.load_task("fac", fac)
    # unaligned: each domain's training folder gives up its share
    u = make_unaligned(tmp_path / "h2z")
    ds = UnalignedFolder(u, "train", load_size=16, crop_size=16, holdout=1, part="heldout")
    assert (len(ds.files_A), len(ds.files_B)) == (1, 1)
    # a stray aligned val/ in a CycleGAN folder is not its held-out split (that would be valA/valB)
    make_aligned(tmp_path / "stray", n=2)
    shutil.copytree(tmp_path / "stray" / "test", u / "val")
    h2z = cfg.override({"data.dataset_root": str(u), "data.n_heldout": 1})
    assert len(gdata.load_task("h2z", h2z).heldout) == 1          # carved out of trainA/trainB, not val/
    with pytest.raises(DatasetError, match="set the preset field data.n_heldout"):
        AlignedFolder(root, "train", holdout=10, part="train")


def test_a_bad_folder_is_found_up_front_with_the_file_and_the_fix(tmp_path):
    from gclib.data import scan_dataset
    root = make_aligned(tmp_path / "mine", n=3)
    assert scan_dataset(root, progress=False) == {"layout": "aligned", "splits": {"train": 3, "test": 3}}
    (root / "train" / "1.jpg").write_bytes((root / "train" / "1.jpg").read_bytes()[:200])   # cut short
    Image.new("RGB", (16, 16)).save(root / "test" / "square.png")                           # not A|B
    with pytest.raises(DatasetError) as e:
        scan_dataset(root, progress=False)
    msg = str(e.value)
    assert "2 of the 7 images" in msg and "1.jpg: unreadable" in msg and "delete or replace it" in msg
    assert "square.png: 16x16" in msg and "trainA" in msg
    cfg = get_preset("smoke", {"data.dataset_root": str(root), "data.n_heldout": 1})
    with pytest.raises(DatasetError, match="cannot be used"):
        gdata.load_task("mine", cfg)                       # before any training starts
    (root / "test" / "square.png").unlink()
    make_aligned(root, n=3)                                # the damaged file replaced
    assert scan_dataset(root, progress=False)["splits"]["train"] == 3
    assert (root / ".gclib-scan.json").exists()
    # a missing split, named
    import shutil
    shutil.rmtree(root / "test")
    with pytest.raises(DatasetError, match="no test or val folder"):
        scan_dataset(root, progress=False)
    u = make_unaligned(tmp_path / "u")
    shutil.rmtree(u / "testB")
    with pytest.raises(DatasetError, match="no testB or valB folder"):
        scan_dataset(u, progress=False)


def test_a_successful_scan_is_remembered_until_a_file_changes(tmp_path, monkeypatch):
    from gclib.data import folders, scan_dataset
    root = make_aligned(tmp_path / "mine", n=2)
    scan_dataset(root, progress=False)
    opened = []
    real_open = folders.Image.open
    monkeypatch.setattr(folders.Image, "open", lambda p, *a: opened.append(p) or real_open(p, *a))
    scan_dataset(root, progress=False)
    assert opened == []                                     # nothing changed: nothing read again
    Image.new("RGB", (32, 16)).save(root / "train" / "new.png")
    scan_dataset(root, progress=False)
    assert len(opened) == 5


def test_the_paper_preset_without_a_dataset_names_the_parameter():
    with pytest.raises(ValueError, match="data.dataset_root.*python -m gclib data download"):
        gdata.load_task("facades", get_preset("paper"))


# -- download -----------------------------------------------------------------------------------------------------------
class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from the test's folder and honours 'Range: bytes=N-' like the dataset hosts."""
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.directory) / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        if self.path.endswith(".html.zip"):       # a host that answers with an error page and status 200
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
        elif rng:
            start = int(rng.split("=")[1].rstrip("-"))
            if start >= len(body):                  # nothing left to send, as real hosts answer
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path.endswith(".short.tar.gz"):   # the connection drops half-way
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path):
    serve_dir = tmp_path / "www"
    serve_dir.mkdir()
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(serve_dir), **k)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _RangeHandler.requests = []
    yield serve_dir, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _tar_of_aligned(tmp_path) -> bytes:
    src = make_aligned(tmp_path / "src" / "facades")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src, arcname="facades")
    return buf.getvalue()


def test_download_verifies_resumes_and_unpacks(tmp_path, server):
    serve_dir, base = server
    payload = _tar_of_aligned(tmp_path)
    (serve_dir / "facades.tar.gz").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "dl" / "archives" / "facades.tar.gz"
    dest.parent.mkdir(parents=True)
    # a previous download stopped half-way: only the rest is requested
    dest.with_name("facades.tar.gz.part").write_bytes(payload[: len(payload) // 2])
    path = gdata.download_dataset("facades", tmp_path / "dl", url=f"{base}/facades.tar.gz", sha256=digest)
    assert _RangeHandler.requests == [f"bytes={len(payload) // 2}-"]
    assert dest.read_bytes() == payload and not dest.with_name("facades.tar.gz.part").exists()
    assert len(AlignedFolder(path, "train")) == 3


def test_download_rejects_a_bad_checksum(tmp_path, server):
    serve_dir, base = server
    (serve_dir / "x.zip").write_bytes(b"PK\x03\x04tampered")
    dest = tmp_path / "x.zip"
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch(f"{base}/x.zip", dest, sha256="0" * 64, progress=False)
    assert not dest.exists()  # nothing half-verified is left where a loader would find it


def test_unpinned_download_records_its_digest_once_unpacked_and_then_enforces_it(tmp_path, server):
    serve_dir, base = server
    payload = _tar_of_aligned(tmp_path)
    (serve_dir / "facades.tar.gz").write_bytes(payload)
    gdata.download_dataset("facades", tmp_path / "dl", url=f"{base}/facades.tar.gz")
    archive = tmp_path / "dl" / "archives" / "facades.tar.gz"
    pin = archive.with_name("facades.tar.gz.sha256")
    assert pin.read_text().split()[0] == hashlib.sha256(payload).hexdigest()
    archive.write_bytes(b"\x1f\x8b changed on disk")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch(f"{base}/facades.tar.gz", archive, progress=False)


def test_a_damaged_archive_is_not_pinned_and_a_second_run_recovers(tmp_path, server):
    serve_dir, base = server
    payload = _tar_of_aligned(tmp_path)
    (serve_dir / "facades.tar.gz").write_bytes(payload[:60])      # gzip magic, but cut short: does not unpack
    with pytest.raises(DatasetError, match="is damaged.*set aside.*Run the same command again"):
        gdata.download_dataset("facades", tmp_path / "dl", url=f"{base}/facades.tar.gz")
    archive = tmp_path / "dl" / "archives" / "facades.tar.gz"
    assert not archive.with_name("facades.tar.gz.sha256").exists()  # its digest was not recorded as the truth
    assert not archive.exists()                                     # set aside: the next run downloads anew
    (serve_dir / "facades.tar.gz").write_bytes(payload)
    path = gdata.download_dataset("facades", tmp_path / "dl", url=f"{base}/facades.tar.gz")
    assert len(AlignedFolder(path, "train")) == 3


def test_a_short_read_keeps_the_part_file_and_says_to_resume(tmp_path, server):
    serve_dir, base = server
    payload = _tar_of_aligned(tmp_path)
    (serve_dir / "f.short.tar.gz").write_bytes(payload)
    dest = tmp_path / "f.tar.gz"
    with pytest.raises(DatasetError, match=r"closed after .* bytes; run the same command again to resume"):
        fetch(f"{base}/f.short.tar.gz", dest, progress=False)
    assert not dest.exists() and not dest.with_name("f.tar.gz.sha256").exists()
    assert 0 < dest.with_name("f.tar.gz.part").stat().st_size < len(payload)


def test_an_html_page_is_refused_and_a_complete_part_file_is_finished_not_refetched_forever(tmp_path, server):
    serve_dir, base = server
    (serve_dir / "x.html.zip").write_bytes(b"<html>503 Service Unavailable</html>")
    with pytest.raises(DatasetError, match="web page"):
        fetch(f"{base}/x.html.zip", tmp_path / "x.zip", progress=False)
    assert list(tmp_path.glob("x.zip*")) == []
    # a .part that already holds the whole file: the server answers the resume with 416, the file is checked and used
    payload = _tar_of_aligned(tmp_path)
    (serve_dir / "full.tar.gz").write_bytes(payload)
    dest = tmp_path / "full.tar.gz"
    dest.with_name("full.tar.gz.part").write_bytes(payload)
    assert fetch(f"{base}/full.tar.gz", dest, sha256=hashlib.sha256(payload).hexdigest(), progress=False) == dest
    assert dest.read_bytes() == payload and _RangeHandler.requests[-1] == f"bytes={len(payload)}-"
    # a body that is not an archive of its kind is set aside, not kept as the archive
    (serve_dir / "fake.tar.gz").write_bytes(b"Not Found")
    with pytest.raises(DatasetError, match="not a .gz archive"):
        fetch(f"{base}/fake.tar.gz", tmp_path / "fake.tar.gz", progress=False)
    assert not (tmp_path / "fake.tar.gz").exists() and len(list(tmp_path.glob("fake.tar.gz.not-an-archive*"))) == 1


def test_downloading_again_keeps_what_the_user_put_in_the_dataset_folder(tmp_path, server):
    serve_dir, base = server
    (serve_dir / "facades.tar.gz").write_bytes(_tar_of_aligned(tmp_path))
    url = f"{base}/facades.tar.gz"
    path = gdata.download_dataset("facades", tmp_path / "dl", url=url)
    (path / "my_notes.txt").write_text("mine")
    assert gdata.download_dataset("facades", tmp_path / "dl", url=url) == path     # same archive: untouched
    assert (path / "my_notes.txt").read_text() == "mine"
    (path / ".unpacked-from").unlink()                                            # a folder of unknown origin ...
    gdata.download_dataset("facades", tmp_path / "dl", url=url)
    kept = [p for p in (tmp_path / "dl").iterdir() if p.name.startswith("facades.replaced-")]
    assert len(kept) == 1 and (kept[0] / "my_notes.txt").read_text() == "mine"    # ... is set aside, not deleted


def test_the_cli_reports_a_failed_download_without_a_traceback(tmp_path, server, capsys):
    from gclib.cli import main
    _, base = server
    assert main(["data", "download", "facades", "--root", str(tmp_path), "--url", f"{base}/missing.tar.gz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: downloading") and "HTTP 404" in err and "Traceback" not in err


def test_extract_zip_in_cyclegan_layout(tmp_path):
    src = make_unaligned(tmp_path / "src" / "horse2zebra")
    archive = tmp_path / "horse2zebra.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in src.rglob("*.png"):
            zf.write(f, f"horse2zebra/{f.relative_to(src)}")
    out = extract(archive, tmp_path / "data" / "horse2zebra")
    assert len(UnalignedFolder(out, "test", load_size=16, crop_size=16).files_B) == 3
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["horse2zebra"]  # no temporary folder left


def test_extract_refuses_unsafe_paths(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(DatasetError, match="unsafe path"):
        extract(archive, tmp_path / "data" / "evil")
    assert not (tmp_path / "data" / "outside.txt").exists()


def test_default_data_dir_is_the_repositorys_data_folder(monkeypatch):
    monkeypatch.delenv("GCLIB_DATA")
    repo = Path(gdata.__file__).resolve().parents[2]
    assert gdata.default_data_dir() == repo / "data" and (repo / "gclib").is_dir()


def test_a_real_dataset_keeps_its_statistics_in_data_stats(tmp_path, monkeypatch):
    """The scorer of a real dataset caches the extractor's features of its real images (test split and floor)."""
    from gclib import metrics

    class Mean(torch.nn.Module):
        calls = 0

        def forward(self, x):
            type(self).calls += 1
            return x.float().mean((2, 3))
    root = make_aligned(tmp_path / "shoes", n=6)
    monkeypatch.setenv("GCLIB_DATA", str(tmp_path / "data"))
    cfg = get_preset("smoke", {"data.dataset_root": str(root), "data.n_heldout": 3})
    data = gdata.load_task("shoes", cfg)
    metrics.split_scorer(data, "test", Mean(), resamples=0)
    first = Mean.calls
    cached = sorted(p.name for p in (tmp_path / "data" / "stats").iterdir())
    assert first > 0 and cached and all(name.startswith("Mean_3x32x32_") for name in cached)
    metrics.split_scorer(data, "test", Mean(), resamples=0)
    assert Mean.calls == first                                              # the second time: read, not computed
    embedded = gdata.load_task("facades", get_preset("smoke"))
    metrics.split_scorer(embedded, "test", Mean(), resamples=0)
    assert len(list((tmp_path / "data" / "stats").iterdir())) == len(cached)   # embedded splits are not cached


def test_a_truncated_embedded_cache_is_set_aside_and_generated_again(tmp_path):
    from gclib.data import load_embedded
    first = load_embedded("facades", "test", 4, 32, data_dir=tmp_path)
    cached = next((tmp_path / "embedded").glob("*.npz"))
    cached.write_bytes(cached.read_bytes()[:100])          # a kill mid-write on a filesystem without atomic renames
    again = load_embedded("facades", "test", 4, 32, data_dir=tmp_path)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert any(p.name.startswith(cached.stem + ".unreadable-") for p in (tmp_path / "embedded").iterdir())


def test_a_flipped_byte_is_refused_with_nothing_pinned_or_unpacked(tmp_path, server):
    serve_dir, base = server
    payload = bytearray(_tar_of_aligned(tmp_path))
    payload[len(payload) // 2] ^= 0x40                       # one bit changed in transit
    (serve_dir / "facades.tar.gz").write_bytes(bytes(payload))
    with pytest.raises(DatasetError, match="is damaged.*nothing was unpacked or recorded"):
        gdata.download_dataset("facades", tmp_path / "dl", url=f"{base}/facades.tar.gz")
    archives = tmp_path / "dl" / "archives"
    assert not (archives / "facades.tar.gz.sha256").exists() and not (tmp_path / "dl" / "facades").exists()
    assert not [p for p in (tmp_path / "dl").iterdir() if p.name.startswith(".facades")]   # no half-unpacked folder


def test_a_part_file_of_another_version_joined_to_this_one_is_refused(tmp_path, server):
    serve_dir, base = server
    old, new = _tar_of_aligned(tmp_path / "old"), _tar_of_aligned(tmp_path / "new")
    new = new[:-9] + b"\x00" * 9 if old == new else new       # two versions of the archive that differ
    (serve_dir / "facades.tar.gz").write_bytes(new)
    dest = tmp_path / "dl" / "archives" / "facades.tar.gz"
    dest.parent.mkdir(parents=True)
    dest.with_name("facades.tar.gz.part").write_bytes(old[: len(old) // 2])     # left by the old version
    with pytest.raises(DatasetError, match="is damaged"):
        gdata.download_dataset("facades", tmp_path / "dl", url=f"{base}/facades.tar.gz")
    assert not dest.with_name("facades.tar.gz.sha256").exists()
    path = gdata.download_dataset("facades", tmp_path / "dl", url=f"{base}/facades.tar.gz")   # the advice works
    assert len(AlignedFolder(path, "train")) == 3


def test_a_stale_pin_says_how_to_accept_the_new_archive(tmp_path, server):
    serve_dir, base = server
    payload = _tar_of_aligned(tmp_path)
    (serve_dir / "facades.tar.gz").write_bytes(payload)
    archive = tmp_path / "dl" / "archives" / "facades.tar.gz"
    archive.parent.mkdir(parents=True)
    archive.with_name("facades.tar.gz.sha256").write_text("0" * 64 + "  facades.tar.gz\n")
    with pytest.raises(DatasetError, match="recorded by an earlier download .*facades.tar.gz.sha256.*move that file"):
        gdata.download_dataset("facades", tmp_path / "dl", url=f"{base}/facades.tar.gz")


def test_embedded_test_splits_share_no_example_with_train_or_heldout():
    """The embedded generator draws each split with its own seed, and at 32x32 a few facades come out identical to
    a training or held-out one: those are dropped from test, so a test score never measures memory."""
    preset = get_preset("laptop")
    for task in ("facades", "stripes"):
        splits = gdata.load_task(task, preset)
        assert gdata._shared_images(splits.test, splits.train) == 0
        assert gdata._shared_images(splits.test, splits.heldout) == 0
        assert len(splits.test.label_A) == len(splits.test.A) == len(splits.test.B if splits.paired else splits.test.A)
    # the rule: the examples are drawn as a stream, and test keeps them in order without the copies, so each copy
    # is replaced by the next example drawn
    d = preset.data
    facades = gdata.load_task("facades", preset)
    drawn = gdata._embedded_split("facades", "test", d.n_test + facades.test.replaced, d.image_size, 0, True)
    assert torch.equal(drawn.A[:d.n_test], gdata._embedded_split("facades", "test", d.n_test, d.image_size, 0, True).A)
    copies = set(gdata._digests(facades.train)) | set(gdata._digests(facades.heldout))
    kept = [i for i, digest in enumerate(gdata._digests(drawn)) if digest not in copies]
    assert facades.test.replaced == len(drawn) - len(kept) > 0
    assert torch.equal(facades.test.A, drawn.A[kept]) and torch.equal(facades.test.B, drawn.B[kept])
    assert torch.equal(facades.test.label_target, drawn.label_target[kept])
