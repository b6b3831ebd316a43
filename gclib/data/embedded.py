"""The embedded tasks (notebook 01): generated from a seed at any resolution 32..256, no download.

- ``facades`` (paired, in the spirit of CMP facades / cityscapes): a colour-coded label map -> a rendered building.
  The rendering is a deterministic function of the label map, but it needs context a small network struggles with:
  brick courses anchored to the building's outline, window frames and a mullion cross at each window's centre,
  glass shaded by the position inside its window, shadows cast under sills and cornices.
- ``stripes`` (unpaired, in the spirit of horse2zebra): domain A holds plain brown animals on grass, domain B
  striped ones, drawn from independent seeds so no pair exists.
- ``coats`` (unpaired and **multimodal**, in the spirit of edges2shoes for MUNIT, notebook 07): domain A as in
  ``stripes``, domain B the same kind of animals in a coat of one of six flat colours (a coat *style*). One plain
  animal has six right translations; a style code has to choose one.

Every image is an ``uint8`` array (H, W, 3).
"""
from __future__ import annotations

import copy
import io
import os
from pathlib import Path

import numpy as np

from ..artifacts import atomic_write_bytes, set_aside
from ..presets import EMBEDDED_TASKS

SPLITS = ("train", "heldout", "test")
# Each task's data version, part of its cache file names and of the zoo's data digests: v2 added the label maps, v3
# the unpaired tasks' oracle translations; coats v4 paints flat coats (a small MUNIT did not learn v3's striped ones).
DATA_VERSIONS = {"facades": 3, "stripes": 3, "coats": 4}


def data_version(task: str) -> int:
    """The version of an embedded task's generated data (a change to what a task draws bumps its own version)."""
    if task not in DATA_VERSIONS:
        raise ValueError(f"unknown embedded task {task!r}; choose one of {sorted(DATA_VERSIONS)}")
    return DATA_VERSIONS[task]


def default_data_dir() -> Path:
    """``$GCLIB_DATA`` if set, else the repository's ``data/`` folder (next to ``gclib/``)."""
    env = os.environ.get("GCLIB_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"  # gclib/data/embedded.py -> repo/data


# ----------------------------------------------------------------------------------------------------------------
# Embedded paired task: label map -> rendered facade
# ----------------------------------------------------------------------------------------------------------------
# Label colours (the network's input). Three wall classes tell the renderer which material the wall is made of.
LABELS = {
    "sky": (10, 20, 120),
    "brick": (230, 60, 60),
    "plaster": (240, 200, 60),
    "stone": (150, 150, 150),
    "window": (40, 200, 240),
    "door": (160, 60, 200),
    "balcony": (60, 220, 90),
    "cornice": (250, 130, 20),
}
WALLS = ("brick", "plaster", "stone")


def _box(mask: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> tuple[int, int, int, int]:
    h, w = mask.shape
    return max(0, y0), min(h, y1), max(0, x0), min(w, x1)


def _facade(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], np.ndarray]:
    """One (label map, photo) pair, both (size, size, 3) uint8, its (wall material, storeys, columns) and the label
    map as class indices (size, size) into ``LABELS``."""
    s = size / 64.0                                   # every length below is in 64-pixel units, scaled by s
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    label = np.zeros((size, size), np.int16)           # index into CLASSES
    classes = list(LABELS)
    cls = {name: i for i, name in enumerate(classes)}
    photo = np.zeros((size, size, 3), np.float32)

    # Building outline: sky above and maybe at the sides, wall down to the bottom edge.
    top = int(rng.integers(4, 16) * s)
    left = int(rng.integers(0, 10) * s) if rng.random() < 0.6 else 0
    right = size - (int(rng.integers(0, 10) * s) if rng.random() < 0.6 else 0)
    wall = WALLS[rng.integers(len(WALLS))]
    label[:] = cls["sky"]
    label[top:, left:right] = cls[wall]

    # Sky: blue, lighter towards the horizon (the building's top).
    t = np.clip(yy / max(top, 1), 0, 1)[..., None]
    photo[:] = (1 - t) * np.array([70, 120, 200]) + t * np.array([170, 200, 235])

    # Wall material, anchored to the building's top-left corner.
    wy, wx = yy - top, xx - left
    if wall == "brick":
        course = 4 * s                                 # brick height; bricks are twice as long as high
        row = np.floor(wy / course)
        offset = (row % 2) * course                    # every other course shifted by half a brick
        mortar = (np.mod(wy, course) < s) | (np.mod(wx + offset, 2 * course) < s)
        color = np.where(mortar[..., None], np.array([205, 195, 180]), np.array([160, 65, 45]))
    elif wall == "plaster":
        band = np.mod(wy, 16 * s) / (16 * s)           # soft horizontal bands between storeys
        color = np.array([225, 205, 160])[None, None] * (0.92 + 0.08 * np.cos(2 * np.pi * band))[..., None]
    else:  # stone: large blocks with dark joints, alternate courses shifted by a third
        course = 8 * s
        row = np.floor(wy / course)
        offset = np.mod(row, 3) * course
        joint = (np.mod(wy, course) < s) | (np.mod(wx + offset, 3 * course) < s)
        color = np.where(joint[..., None], np.array([90, 90, 95]), np.array([165, 165, 170]))
    on_wall = label == cls[wall]
    photo[on_wall] = color[on_wall] if color.ndim == 3 else color

    # Storeys and window columns.
    n_floors = int(rng.integers(2, 5))
    n_cols = int(rng.integers(2, 5))
    floor_h = (size - top) / n_floors
    col_w = (right - left) / n_cols
    win_h = floor_h * rng.uniform(0.45, 0.65)
    win_w = col_w * rng.uniform(0.4, 0.65)
    door_col = int(rng.integers(n_cols))
    boxes: list[tuple[str, tuple[int, int, int, int]]] = []
    for f in range(n_floors):
        fy0 = top + f * floor_h
        if f > 0 and rng.random() < 0.5:                # a cornice line between storeys
            boxes.append(("cornice", _box(label, int(fy0), int(fy0 + 2 * s), left, right)))
        balcony = f < n_floors - 1 and rng.random() < 0.35
        for c in range(n_cols):
            cx = left + (c + 0.5) * col_w
            if f == n_floors - 1 and c == door_col:    # the door, on the ground floor
                dw, dh = win_w * 1.1, floor_h * 0.8
                boxes.append(("door", _box(label, int(size - dh), size, int(cx - dw / 2), int(cx + dw / 2))))
                continue
            wy0 = fy0 + (floor_h - win_h) * 0.45
            boxes.append(("window", _box(label, int(wy0), int(wy0 + win_h), int(cx - win_w / 2),
                                         int(cx + win_w / 2))))
            if balcony:
                by1 = int(wy0 + win_h + 1 * s)
                boxes.append(("balcony", _box(label, int(by1 - win_h * 0.35), by1, int(cx - win_w * 0.7),
                                              int(cx + win_w * 0.7))))
    if rng.random() < 0.7:                              # a roof cornice along the top
        boxes.append(("cornice", _box(label, top, int(top + 3 * s), left, right)))

    frame = max(1, round(s))
    for kind, (y0, y1, x0, x1) in boxes:
        if y1 - y0 < 2 or x1 - x0 < 2:
            continue
        label[y0:y1, x0:x1] = cls[kind]
        region = photo[y0:y1, x0:x1]
        ly, lx = yy[y0:y1, x0:x1] - y0, xx[y0:y1, x0:x1] - x0
        h, w = y1 - y0, x1 - x0
        if kind == "window":
            # Glass darkens towards the top of the window; a white frame and a centred mullion cross.
            g = (ly / max(h - 1, 1))[..., None]
            region[:] = (1 - g) * np.array([25, 40, 80]) + g * np.array([90, 130, 175])
            edge = (ly < frame) | (ly >= h - frame) | (lx < frame) | (lx >= w - frame)
            cross = (np.abs(lx - (w - 1) / 2) < frame / 2 + 0.01) | (np.abs(ly - (h - 1) / 2) < frame / 2 + 0.01)
            region[edge | cross] = (235, 235, 228)
            # The sill casts a shadow on the wall just below the window.
            sy0, sy1 = y1, min(size, y1 + 2 * frame)
            under = label[sy0:sy1, x0:x1] == cls[wall]
            photo[sy0:sy1, x0:x1][under] *= 0.55
        elif kind == "door":
            planks = np.mod(lx, 3 * s) < max(s * 0.7, 0.7)
            region[:] = np.where(planks[..., None], np.array([80, 45, 20]), np.array([125, 75, 35]))
            edge = (ly < frame) | (lx < frame) | (lx >= w - frame)
            region[edge] = (60, 35, 20)
            knob = (np.abs(ly - h * 0.55) < frame) & (np.abs(lx - w * 0.8) < frame)
            region[knob] = (220, 190, 60)
        elif kind == "balcony":
            bars = np.mod(lx, 2 * s) < max(0.8 * s, 0.8)
            rail = ly < frame
            region[:] = np.where((bars | rail)[..., None], np.array([40, 40, 45]), region * 0.75)
        else:  # cornice: lit top half, shaded underside
            region[:] = np.where((ly < h / 2)[..., None], np.array([230, 225, 215]), np.array([140, 135, 125]))
            sy0, sy1 = y1, min(size, y1 + frame)
            under = label[sy0:sy1, x0:x1] == cls[wall]
            photo[sy0:sy1, x0:x1][under] *= 0.7

    palette = np.array([LABELS[c] for c in classes], np.uint8)
    return palette[label], np.clip(photo, 0, 255).astype(np.uint8), (WALLS.index(wall), n_floors, n_cols), label


# ----------------------------------------------------------------------------------------------------------------
# Embedded unpaired task: plain animals (A) -> striped animals (B)
# ----------------------------------------------------------------------------------------------------------------
ANIMAL_CLASSES = ("sky", "grass", "plain animal", "striped animal")


# Coat styles of the multimodal task: flat colours, none of them a plain animal's brown nor the grass's green. The
# striped coats of data version 3 (four colour pairs, any width and direction) were not learned by MUNIT in budget.
COAT_COLOURS = ((240, 240, 235),    # white
                (35, 35, 40),       # black
                (210, 45, 45),      # red
                (60, 95, 215),      # blue
                (245, 215, 60),     # yellow
                (160, 70, 185))     # purple


def draw_coat(rng: np.random.Generator) -> tuple[int]:
    """A random coat style: (colour index into ``COAT_COLOURS``,)."""
    return (int(rng.integers(len(COAT_COLOURS))),)


COAT_ZOOM = 1.5    # the coats task frames its animals closer: a coat's colour covers more pixels at 32x32


def _animal(rng: np.random.Generator, size: int, striped: bool, coat: tuple[int] | None = None,
            zoom: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A four-legged animal on grass under sky; plain brown (domain A) or, for domain B, with a zebra's stripes, or
    in the flat colour of ``coat`` (:func:`draw_coat`); the view ``zoom`` times closer around (0.5, 0.55). Returns the image
    (size, size, 3) uint8 and its label map (size, size), indices into ``ANIMAL_CLASSES``. The coat takes nothing
    from ``rng``: the same state draws the same scene."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size        # coordinates in [0, 1)
    yy, xx = 0.55 + (yy - 0.55) / zoom, 0.5 + (xx - 0.5) / zoom
    horizon = rng.uniform(0.25, 0.45)
    img = np.empty((size, size, 3), np.float32)
    sky_t = np.clip(yy / horizon, 0, 1)[..., None]
    img[:] = (1 - sky_t) * np.array([110, 160, 225]) + sky_t * np.array([190, 215, 240])
    grass_t = np.clip((yy - horizon) / (1 - horizon), 0, 1)[..., None]
    grass = (1 - grass_t) * np.array([120, 170, 70]) + grass_t * np.array([60, 120, 40])
    blades = 0.9 + 0.1 * np.sin(xx * size * 1.7 + np.sin(yy * size * 0.9) * 3)  # a fixed grass texture
    img = np.where((yy >= horizon)[..., None], grass * blades[..., None], img)

    # Body: an ellipse; neck and head: a slanted ellipse and a circle; four legs: thin boxes.
    cx, cy = rng.uniform(0.35, 0.65), rng.uniform(horizon + 0.05, 0.6)
    bw, bh = rng.uniform(0.18, 0.26), rng.uniform(0.09, 0.13)
    facing = 1 if rng.random() < 0.5 else -1
    body = ((xx - cx) / bw) ** 2 + ((yy - cy) / bh) ** 2 <= 1
    nx, ny = cx + facing * bw * 0.95, cy - bh * 1.2
    neck = (((xx - nx) * 0.8 + (yy - ny) * 0.6 * facing) / (bh * 0.55)) ** 2 + \
           (((yy - ny) * 0.8 - (xx - nx) * 0.6 * facing) / (bh * 1.3)) ** 2 <= 1
    hx, hy = nx + facing * bh * 0.5, ny - bh * 0.9
    head = ((xx - hx) / (bh * 0.75)) ** 2 + ((yy - hy) / (bh * 0.55)) ** 2 <= 1
    legs = np.zeros_like(body)
    for k in (-0.75, -0.45, 0.45, 0.75):
        lx = cx + k * bw
        legs |= (np.abs(xx - lx) < 0.022) & (yy > cy) & (yy < cy + bh + rng.uniform(0.12, 0.18))
    animal = body | neck | head | legs
    # Shade: lit from above, darker at the belly.
    shade = (0.75 + 0.35 * np.clip((cy + bh - yy) / (2 * bh), 0, 1))[..., None]
    if striped and coat is None:
        # Stripes run across the body, bending with the distance from its centre like a zebra's.
        phase = (xx - cx) * 28 + 4 * np.sin((yy - cy) * 18)
        stripe = np.sin(phase * np.pi / 2) > 0
        coat = np.where(stripe[..., None], np.array([240, 240, 235]), np.array([25, 25, 25]))
    elif striped:
        coat = np.broadcast_to(np.array(COAT_COLOURS[coat[0]], np.float32), img.shape)
    else:
        browns = np.array([[140, 90, 50], [110, 70, 40], [165, 120, 75]])
        coat = np.broadcast_to(browns[rng.integers(3)], img.shape)
    img = np.where(animal[..., None], coat * shade, img)
    label = np.where(animal, 3 if striped else 2, np.where(yy >= horizon, 1, 0)).astype(np.int16)
    return np.clip(img, 0, 255).astype(np.uint8), label


def split_seed(seed: int, split: str, stream: int = 0) -> np.random.SeedSequence:
    """Independent random streams per (seed, split, stream): splits never share an image."""
    return np.random.SeedSequence([seed, SPLITS.index(split), stream])


def generate_embedded(task: str, split: str, n: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Generate ``n`` examples of an embedded task. Returns uint8 arrays ``A`` and ``B`` of shape (n, size, size, 3)
    (for ``facades`` also int arrays ``wall``, ``floors``, ``cols`` describing each building and its ``label`` map;
    for ``stripes`` the label maps ``label_A``, ``label_B`` and ``target``, each A redrawn striped: the translation
    a perfect generator would make, for evaluation only; for ``coats`` also ``coat_B`` (n,): each B's coat colour,
    and ``target`` drawn in a random coat, one of the many right answers).

    For ``facades`` row i of A and B is a pair; for ``stripes`` and ``coats`` A and B come from independent streams
    (unpaired). The streams of ``coats`` are not those of ``stripes``: the two tasks share no image.
    """
    if task not in EMBEDDED_TASKS:
        raise ValueError(f"unknown embedded task {task!r}; choose one of {sorted(EMBEDDED_TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if not 32 <= size <= 256:
        raise ValueError(f"embedded datasets are generated at 32..256 pixels, got {size}")
    if task == "facades":
        rng = np.random.default_rng(split_seed(seed, split))
        pairs = [_facade(rng, size) for _ in range(n)]
        attrs = np.array([p[2] for p in pairs], np.int64).reshape(n, 3)
        # A, B: images; wall/floors/cols: what the renderer drew (the offline FID extractor learns to see these);
        # label: the class of every pixel (A is its colour-coded picture), what a segmenter should read from B
        return {"A": np.stack([p[0] for p in pairs]), "B": np.stack([p[1] for p in pairs]),
                "wall": attrs[:, 0], "floors": attrs[:, 1], "cols": attrs[:, 2],
                "label": np.stack([p[3] for p in pairs]).reshape(n, size, size)}
    styled = task == "coats"
    zoom = COAT_ZOOM if styled else 1.0
    first = 3 if styled else 1                         # coats: streams 3 (A), 4 (B), 5 (B's coats), 6 (targets')
    rng_a = np.random.default_rng(split_seed(seed, split, first))
    rng_b = np.random.default_rng(split_seed(seed, split, first + 1))
    coats_b = np.random.default_rng(split_seed(seed, split, first + 2))
    coats_target = np.random.default_rng(split_seed(seed, split, first + 3))
    a, oracle = [], []
    for _ in range(n):
        # The oracle translation of A: the same scene drawn again from the same random state with a striped coat
        # (a striped animal draws nothing a plain one does not). Never trained on; it lets evaluation measure how
        # far G(A) is from the right answer, which an unpaired task otherwise cannot.
        twin = copy.deepcopy(rng_a)
        a.append(_animal(rng_a, size, False, zoom=zoom))
        oracle.append(_animal(twin, size, True, draw_coat(coats_target) if styled else None, zoom)[0])
    coat_b = [draw_coat(coats_b) if styled else None for _ in range(n)]
    b = [_animal(rng_b, size, True, coat, zoom) for coat in coat_b]
    # label_A, label_B: sky / grass / plain animal / striped animal for every pixel of A and of B;
    # target: A's scene with the animal striped, what a perfect A -> B translation would draw
    arrays = {"A": np.stack([x[0] for x in a]), "B": np.stack([x[0] for x in b]),
              "target": np.stack(oracle).reshape(n, size, size, 3),
              "label_A": np.stack([x[1] for x in a]).reshape(n, size, size),
              "label_B": np.stack([x[1] for x in b]).reshape(n, size, size)}
    if styled:
        arrays["coat_B"] = np.array([c[0] for c in coat_b], np.int64)      # colour index
    return arrays


def coat_variants(split: str, n: int, size: int, k: int, seed: int = 0) -> np.ndarray:
    """The first ``n`` plain animals of a ``coats`` split, each drawn in ``k`` random coats: (n, k, size, size, 3)
    uint8, right answers that differ by their style only. How much they differ is the diversity a multimodal
    generator should reach (notebook 07); the coats come from a stream of their own (7)."""
    rng_a = np.random.default_rng(split_seed(seed, split, 3))
    coats = np.random.default_rng(split_seed(seed, split, 7))
    out = np.empty((n, k, size, size, 3), np.uint8)
    for i in range(n):
        for j in range(k):
            out[i, j] = _animal(copy.deepcopy(rng_a), size, True, draw_coat(coats), COAT_ZOOM)[0]
        _animal(rng_a, size, False, zoom=COAT_ZOOM)    # advance to the next scene, as generate_embedded does
    return out


def load_embedded(task: str, split: str, n: int, size: int, seed: int = 0,
                  data_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """Like :func:`generate_embedded`, cached as ``data/embedded/{task}_{split}_{size}px_{n}_s{seed}_v{version}.npz``
    (``version``: :func:`data_version` of the task)."""
    root = Path(data_dir) if data_dir else default_data_dir()
    path = root / "embedded" / f"{task}_{split}_{size}px_{n}_s{seed}_v{data_version(task)}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return dict(z)
        except Exception as e:   # truncated by a kill or a full disk: regenerated (it is a pure function of seed)
            moved = set_aside(path, "unreadable")
            print(f"could not read {path} ({type(e).__name__}: {e}); set aside as {moved.name}, generating it again")
    arrays = generate_embedded(task, split, n, size, seed)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return arrays

