"""Inference refuses what it cannot segment: images that are not uint8 (H, W, 3), scales that
are not positive, files that declare more pixels than they should, and a model whose
probabilities are not finite. 16-bit and greyscale files are converted by what they mean."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import atrousnp as anp
from atrousnp.data import read_image
from atrousnp.data.images import MAX_PIXELS
from atrousnp.inference import predict
from atrousnp.train import train
from helpers import tiny_train_config

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.fixture(scope="module")
def tiny_model():
    rng = np.random.default_rng(0)
    return anp.models.deeplabv3_small(num_classes=3, rng=rng)


@pytest.mark.parametrize("image,message", [
    (np.zeros((8, 8, 3), np.float32), r"got float32 \(8, 8, 3\); an image of floats in 0..1 converts with"),
    (np.full((8, 8, 3), np.nan), r"got float64 \(8, 8, 3\); an image of floats in 0..1"),
    (np.zeros((8, 8), np.uint8), r"got uint8 \(8, 8\); a greyscale image converts with"),
    (np.zeros((8, 8, 4), np.uint8), r"got uint8 \(8, 8, 4\); drop the alpha channel"),
    (np.zeros((0, 8, 3), np.uint8), r"got uint8 \(0, 8, 3\)"),
    (np.zeros((8, 8, 3), np.uint16), r"got uint16 \(8, 8, 3\)"),
])
def test_predict_refuses_an_image_that_is_not_uint8_rgb(tiny_model, image, message):
    with pytest.raises(TypeError, match=r"predict: image must be uint8 \(H, W, 3\), " + message):
        predict(tiny_model, image)


@pytest.mark.parametrize("scales", [(-1,), (0.0,), (float("nan"),), (float("inf"),), (), ("big",), (True,), (1e-6,),
                                    (1e4,), "1,-1"])
def test_predict_refuses_a_scale_that_is_not_positive_finite_and_of_a_sane_size(tiny_model, scales):
    with pytest.raises(ValueError, match=r"scales(: | must be positive finite numbers, got)"):
        predict(tiny_model, np.zeros((16, 16, 3), np.uint8), scales=scales)
    with pytest.raises(TypeError, match=r"predict: flip must be True or False, got 'no'"):
        predict(tiny_model, np.zeros((16, 16, 3), np.uint8), flip="no")


def test_a_model_whose_probabilities_are_not_finite_gives_no_prediction():
    """A nan probability would become class 0 under argmax: a silent all-background result."""
    model = anp.models.deeplabv3_small(num_classes=3, rng=np.random.default_rng(0))
    model.load_state_dict({name: np.full(value.shape, np.nan) for name, value in model.state_dict().items()})
    with pytest.raises(ValueError, match="probabilities are not finite"):
        predict(model, np.zeros((16, 16, 3), np.uint8))


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 32 * 32).round().astype(np.uint16).reshape(32, 32)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    image = read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
    np.testing.assert_array_equal(image[..., 0], np.round(ramp * (255 / 65535)).astype(np.uint8))
    assert (image[..., 0] == image[..., 2]).all() and image.min() == 0 and image.max() == 255


def test_greyscale_palette_and_alpha_images_read_as_rgb(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.repeat(grey[:, :, None], 3, axis=2))
    rgba = np.dstack([np.full((8, 8, 3), 200, np.uint8), np.zeros((8, 8), np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    np.testing.assert_array_equal(read_image(tmp_path / "alpha.png"), rgba[..., :3])


def png_declaring(width, height):
    """A tiny PNG whose header declares width x height greyscale pixels; its data is one row."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_a_file_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, side):
    """10000 x 10000 is past our limit; 20000 x 20000 also past PIL's own, which raised a traceback."""
    (tmp_path / "bomb.png").write_bytes(png_declaring(side, side))
    assert (tmp_path / "bomb.png").stat().st_size < 50_000 and side * side > MAX_PIXELS
    with pytest.raises(ValueError, match=r"bomb.png (is 10000x10000 \(100.0 megapixels\)|declares over 179 megapixels); atrousnp reads "
                                         r"at most 16.8 \(max_pixels\): resize it first"):
        read_image(tmp_path / "bomb.png")


def test_a_truncated_image_is_named(tmp_path):
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "cut.jpg", quality=90)
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot read .*cut.jpg"):
        read_image(tmp_path / "cut.jpg")


def test_the_examples_refuse_bad_scales_bombs_and_missing_checkpoints_in_one_line(tmp_path):
    train(tiny_train_config(tmp_path, iterations=1))
    checkpoint = str(tmp_path / "run" / "checkpoint.npz")
    (tmp_path / "bomb.png").write_bytes(png_declaring(10_000, 10_000))
    Image.fromarray(np.linspace(0, 65535, 40 * 40).astype(np.uint16).reshape(40, 40)).save(tmp_path / "deep.png")

    def run(script, *args):
        return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                              timeout=300)

    for script, args in (("evaluate.py", [checkpoint]), ("segment.py", [str(tmp_path / "deep.png"), "--checkpoint",
                                                                          checkpoint])):
        refused = run(script, *args, "--scales=-1", "--backend", "numpy")
        assert refused.returncode == 2 and "--scales must be positive finite numbers" in refused.stderr, refused.stderr
    missing = run("evaluate.py", str(tmp_path / "none.npz"), "--backend", "numpy")
    assert missing.returncode == 1 and missing.stderr.strip() == f"error: load: no checkpoint at {tmp_path / 'none.npz'}"
    bomb = run("segment.py", str(tmp_path / "bomb.png"), "--checkpoint", checkpoint, "--backend", "numpy")
    assert bomb.returncode == 1 and "bomb.png is 10000x10000" in bomb.stderr and "Traceback" not in bomb.stderr
    deep = run("segment.py", str(tmp_path / "deep.png"), "--checkpoint", checkpoint, "--backend", "numpy", "--out",
               str(tmp_path / "deep_segmented.png"))
    assert deep.returncode == 0, deep.stderr
