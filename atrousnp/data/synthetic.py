"""A synthetic dataset in the VOC layout, so that training runs with nothing downloaded.

Each image has a textured background and 1-4 objects, each with a colour and a stripe texture
of its class and its own shape; labels are palette PNGs with a band of 255 (ignore) around
each object's edge, as VOC's own annotations have. The set has six classes of its own (0 is
background; ``SYNTHETIC_NAMES``), named in ``VOC2012/classes.txt``, so that a model trained on it
has six outputs and its mIoU is a mean over those six. Two kinds:

* ``kind="shapes"`` (the training example's): five classes, each its own colour, texture and
  shape, drawn at widely varying scales (radius 5% to 45% of the image).
* ``kind="ablation"`` (``examples/reproduce_paper.py``'s): built so that each of the paper's
  effects has something to act on. Aeroplanes are thin crosses and persons small squares,
  whose shapes a coarse output stride blurs away (Table 1). Trains are larger than the image,
  so that the middle of one is far from any edge: a field of view that grows (cascade depth,
  multi-grid, ASPP's rates) has something to find (Tables 2, 3, 5). Cats and dogs look the
  same, pixel for pixel; only the scene tells them apart (cats in warm-coloured scenes, dogs
  in cool ones), so inside a large one only image-wide context (ASPP's image pooling) knows
  which it is.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .palette import IGNORE_INDEX, voc_palette

# class index: (name, base colour RGB, stripe period in pixels, shape, radius range as a share of
# the image size). The set's own classes, 0 (background) to 5, are written to VOC2012/classes.txt.
SYNTHETIC_CLASSES = {
    1: ("aeroplane", (200, 60, 50), 4, "disk", (0.05, 0.45)),
    2: ("cat", (60, 170, 70), 6, "square", (0.05, 0.45)),
    3: ("dog", (60, 80, 200), 3, "triangle", (0.05, 0.45)),
    4: ("person", (220, 190, 60), 8, "ring", (0.05, 0.45)),
    5: ("train", (170, 70, 190), 5, "ellipse", (0.05, 0.45)),
}
ABLATION_CLASSES = {
    1: ("aeroplane", (200, 60, 50), 4, "cross", (0.25, 0.45)),
    2: ("cat", (120, 120, 120), 5, "disk", (0.2, 0.6)),
    3: ("dog", (120, 120, 120), 5, "disk", (0.2, 0.6)),
    4: ("person", (220, 190, 60), 3, "square", (0.08, 0.14)),
    5: ("train", (170, 70, 190), 6, "ellipse", (0.5, 0.9)),
}
SYNTHETIC_NAMES = ("background",) + tuple(name for name, *_ in SYNTHETIC_CLASSES.values())
# kind: (classes, {scene: (background base colour, the classes drawn in it)}); the shapes kind's
# scene has a random base colour and draws every class. In the ablation kind, cats stand in warm
# scenes and dogs in cool ones, and the small persons are drawn twice as often as the others.
KINDS = {"shapes": (SYNTHETIC_CLASSES, {"any": (None, tuple(SYNTHETIC_CLASSES))}),
         "ablation": (ABLATION_CLASSES, {"warm": ((150, 115, 80), (1, 2, 4, 4, 5)),
                                         "cool": ((80, 115, 150), (1, 3, 4, 4, 5))})}
_VERSION = 4  # 4: the set's own class indices 0..5, named in classes.txt


def make_synthetic_voc(root, n_train=200, n_val=50, image_size=96, seed=0, kind="shapes"):
    """Write the dataset under root/VOC2012 (unless the same one is already there); return root.
    ``kind``: "shapes" or "ablation" (see the module's docstring)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    root = Path(root)
    folder = root / "VOC2012"
    settings = dict(version=_VERSION, n_train=n_train, n_val=n_val, image_size=image_size, seed=seed, kind=kind)
    marker = folder / "synthetic.json"
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        return root
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = voc_palette().ravel().tolist()
    for split, count in (("train", n_train), ("val", n_val)):
        ids = [f"synthetic_{split}_{i:05d}" for i in range(count)]
        for image_id in ids:
            image, label = synthetic_pair(rng, image_size, kind)
            Image.fromarray(image).save(folder / "JPEGImages" / f"{image_id}.jpg", quality=95)
            png = Image.fromarray(label, mode="P")
            png.putpalette(palette)
            png.save(folder / "SegmentationClass" / f"{image_id}.png")
        (folder / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (folder / "classes.txt").write_text("\n".join(SYNTHETIC_NAMES) + "\n")
    marker.write_text(json.dumps(settings))
    return root


def synthetic_pair(rng, size, kind="shapes"):
    """One (image uint8 (size, size, 3), label uint8 (size, size)) pair of the given kind."""
    classes, scenes = KINDS[kind]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    scene = next(iter(scenes)) if len(scenes) == 1 else str(rng.choice(list(scenes)))  # one scene: no draw
    base, drawn = scenes[scene]
    image = _background(rng, size, yy, xx, base)
    label = np.zeros((size, size), np.uint8)
    edges = np.zeros((size, size), bool)
    for _ in range(rng.integers(1, 5)):
        class_index = int(rng.choice(drawn))
        _, colour, period, shape, (smallest, largest) = classes[class_index]
        radius = size * rng.uniform(smallest, largest)
        cy, cx = rng.uniform(0, size, 2)
        inside = _shape_mask(shape, yy - cy, xx - cx, radius, rng.uniform(0, np.pi))
        if not inside.any():
            continue
        angle = rng.uniform(0, np.pi)
        stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period) > 0
        texture = np.where(stripes[..., None], np.array(colour), 0.6 * np.array(colour))
        texture = texture * rng.uniform(0.8, 1.2) + rng.normal(0, 12, (size, size, 3))
        image[inside] = texture[inside]
        label[inside] = class_index
        edges |= inside ^ _erode(inside)
    label[_dilate(edges)] = IGNORE_INDEX
    return np.clip(image, 0, 255).astype(np.uint8), label


def _background(rng, size, yy, xx, base=None):
    """Smooth random colour fields around the ``base`` colour (None: a random one), plus noise:
    texture that is not any class's."""
    image = np.zeros((size, size, 3))
    for _ in range(3):
        fy, fx = rng.uniform(0.5, 3, 2) * 2 * np.pi / size
        phase = rng.uniform(0, 2 * np.pi)
        image += rng.uniform(20, 50, 3) * np.sin(fy * yy + fx * xx + phase)[..., None]
    base = rng.uniform(90, 140, 3) if base is None else np.asarray(base)
    return image + base + rng.normal(0, 10, (size, size, 3))


def _shape_mask(shape, dy, dx, radius, angle):
    ry = dy * np.cos(angle) - dx * np.sin(angle)
    rx = dy * np.sin(angle) + dx * np.cos(angle)
    distance = np.hypot(dy, dx)
    if shape == "disk":
        return distance < radius
    if shape == "square":
        return np.maximum(np.abs(ry), np.abs(rx)) < radius * 0.8
    if shape == "triangle":
        return (ry < radius * 0.5) & (ry > -radius + 1.7 * np.abs(rx))
    if shape == "ring":
        return (distance < radius) & (distance > radius * 0.55)
    if shape == "cross":  # two bars 0.4 radius wide: thin parts
        return (np.maximum(np.abs(ry) / 0.2, np.abs(rx)) < radius) | (np.maximum(np.abs(ry), np.abs(rx) / 0.2) < radius)
    return np.hypot(ry / 0.5, rx) < radius  # ellipse


def _erode(mask):
    return mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)


def _dilate(mask):
    return mask | np.roll(mask, 1, 0) | np.roll(mask, -1, 0) | np.roll(mask, 1, 1) | np.roll(mask, -1, 1)
