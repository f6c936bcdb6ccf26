"""VOC loading, the synthetic set, augmentation, metrics and inference."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import atrousnp as anp
from atrousnp.data import SYNTHETIC_NAMES, TrainTransform, VOCSegmentation, make_synthetic_voc, random_batch, voc_palette
from atrousnp.metrics import confusion_matrix, mean_iou, per_class_iou, pixel_accuracy

SHARED_VOC = Path(__file__).resolve().parents[2] / "shared" / "voc-mini"


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return make_synthetic_voc(tmp_path_factory.mktemp("voc"), n_train=6, n_val=3, image_size=48, seed=1)


def test_synthetic_set_round_trips_through_the_loader(synthetic_root):
    train = VOCSegmentation(synthetic_root, "train")
    assert len(train) == 6 and len(VOCSegmentation(synthetic_root, "val")) == 3
    image, label = train[0]
    assert image.dtype == np.uint8 and image.shape == (48, 48, 3)
    assert label.dtype == np.uint8 and label.shape == (48, 48)
    assert set(np.unique(label)) <= {0, 1, 2, 3, 4, 5, 255}
    png = Image.open(train.paths(0)[1])
    assert png.mode == "P" and png.getpalette()[:6] == voc_palette()[:2].ravel().tolist()
    labels = np.concatenate([train[i][1].ravel() for i in range(len(train))])
    assert (labels == 255).any() and (labels > 0).any() and (labels == 0).any()


def test_synthetic_set_is_generated_once(synthetic_root):
    list_file = synthetic_root / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt"
    stamp = list_file.stat().st_mtime_ns
    make_synthetic_voc(synthetic_root, n_train=6, n_val=3, image_size=48, seed=1)
    assert list_file.stat().st_mtime_ns == stamp


@pytest.mark.skipif(not SHARED_VOC.exists(), reason="../shared/voc-mini is absent")
def test_real_voc_pair_labels_are_the_png_indices():
    dataset = VOCSegmentation(SHARED_VOC, "train")
    image, label = dataset[0]
    indices = np.asarray(Image.open(dataset.paths(0)[1]))
    np.testing.assert_array_equal(label, indices)
    assert image.shape[:2] == label.shape and image.dtype == np.uint8
    assert set(np.unique(label)) <= set(range(21)) | {255}
    # Indices, not colours: VOC's palette turns them back into the PNG's own RGB rendering.
    rgb = np.asarray(Image.open(dataset.paths(0)[1]).convert("RGB"))
    np.testing.assert_array_equal(voc_palette()[label], rgb)


def test_bad_files_are_named(synthetic_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    dataset = VOCSegmentation(root, "train")
    jpeg, png = dataset.paths(0)
    jpeg.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=jpeg.name):
        dataset[0]
    dataset.paths(1)[1].unlink()
    with pytest.raises(FileNotFoundError, match=dataset.paths(1)[1].name):
        dataset[1]
    Image.fromarray(np.zeros((5, 5), np.uint8), mode="L").save(dataset.paths(2)[1])
    with pytest.raises(ValueError, match=r"label is 5x5 but its image"):
        dataset[2]
    with pytest.raises(FileNotFoundError, match="no split 'test'"):
        VOCSegmentation(root, "test")


def test_transforms_keep_image_and_label_aligned():
    """An image whose pixels encode their label survives scale/pad/crop/flip consistently."""
    rng = np.random.default_rng(0)
    label = np.zeros((40, 60), np.uint8)
    label[5:25, 10:30], label[20:38, 35:55] = 1, 2
    colours = np.array([[0, 0, 0], [250, 0, 0], [0, 250, 0]], np.uint8)
    image = colours[label]
    transform = TrainTransform(crop_size=48)
    for _ in range(20):
        x, y = transform(image, label, rng)
        assert x.shape == (3, 48, 48) and y.shape == (48, 48) and y.dtype == np.int64
        pixels = x.transpose(1, 2, 0) * anp.data.transforms.IMAGENET_STD + anp.data.transforms.IMAGENET_MEAN
        for cls, channel in ((1, 0), (2, 1)):
            inside = y == cls
            interior = inside & np.roll(inside, 1, 0) & np.roll(inside, -1, 0) & np.roll(inside, 1, 1) & np.roll(inside, -1, 1)
            if interior.any():
                assert pixels[interior, channel].min() > 200


def test_batches_are_reproducible(synthetic_root):
    dataset = VOCSegmentation(synthetic_root, "train")
    a = random_batch(dataset, TrainTransform(32), 4, np.random.default_rng(3))
    b = random_batch(dataset, TrainTransform(32), 4, np.random.default_rng(3))
    assert a[0].shape == (4, 3, 32, 32) and a[0].dtype == np.float32 and a[1].dtype == np.int64
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_a_dataset_smaller_than_the_batch_repeats_images(synthetic_root):
    dataset = VOCSegmentation(synthetic_root, "val")  # 3 images
    images, labels = random_batch(dataset, TrainTransform(32), 5, np.random.default_rng(0))
    assert images.shape == (5, 3, 32, 32) and labels.shape == (5, 32, 32)


def test_miou_on_a_hand_computed_case():
    label = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 2, 2]])
    cm = confusion_matrix(pred, label, num_classes=4)
    # class 0: TP 3, FN 1 (pred 1)            -> IoU 3/4
    # class 1: TP 2, FP 1, FN 1 (pred 2)      -> IoU 2/4
    # class 2: TP 0, FP 1                     -> IoU 0;  class 3 absent everywhere -> skipped
    np.testing.assert_array_equal(cm[:3, :3], [[3, 1, 0], [0, 2, 1], [0, 0, 0]])
    np.testing.assert_allclose(per_class_iou(cm)[:3], [0.75, 0.5, 0.0])
    assert np.isnan(per_class_iou(cm)[3])
    assert mean_iou(cm) == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    assert pixel_accuracy(cm) == pytest.approx(5 / 7)


@pytest.mark.full_model
def test_predict_averages_scales_and_flips(backend):
    model = anp.models.deeplabv3_small(num_classes=3, rng=np.random.default_rng(0))
    image = (np.random.default_rng(1).random((37, 41, 3)) * 255).astype(np.uint8)
    probs = anp.predict(model, image, output_stride=8, scales=(0.75, 1.0), flip=True)
    assert probs.shape == (3, 37, 41)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, rtol=1e-5)
    assert model.training and model.output_stride == 16  # restored
    single = anp.predict(model, image)
    mirrored = anp.predict(model, image[:, ::-1])[..., ::-1]
    both = anp.predict(model, image, flip=True)
    np.testing.assert_allclose(both, (single + mirrored) / 2, rtol=1e-5, atol=1e-6)


def test_sbd_style_labels_come_from_segmentation_class_aug(synthetic_root, tmp_path):
    root = tmp_path / "aug"
    shutil.copytree(synthetic_root, root)
    folder = root / "VOC2012"
    shutil.copytree(folder / "SegmentationClass", folder / "SegmentationClassAug")
    plain = VOCSegmentation(root, "train")
    aug_path = VOCSegmentation(root, "train", use_aug=True).paths(0)[1]
    assert aug_path.parent.name == "SegmentationClassAug"
    Image.fromarray(np.full_like(plain[0][1], 3), mode="L").save(aug_path)
    np.testing.assert_array_equal(VOCSegmentation(root, "train", use_aug=True)[0][1], 3)
    assert not (plain[0][1] == 3).all()


def test_the_ablation_set_tells_cats_from_dogs_by_the_scene_alone(tmp_path):
    """Cats and dogs are drawn alike; a cat's scene is warm (more red than blue), a dog's cool."""
    from atrousnp.data.synthetic import ABLATION_CLASSES
    assert ABLATION_CLASSES[2][1:] == ABLATION_CLASSES[3][1:]
    root = make_synthetic_voc(tmp_path, n_train=40, n_val=2, image_size=64, seed=3, kind="ablation")
    dataset = VOCSegmentation(root, "train")
    cat, dog = dataset.class_names.index("cat"), dataset.class_names.index("dog")
    seen = set()
    for image, label in dataset:
        classes = set(np.unique(label)) - {255}
        assert not {cat, dog} <= classes
        background = image[label == 0].mean(axis=0)
        if (cat in classes or dog in classes) and (label == 0).sum() > 100:  # some are all objects
            assert (background[0] > background[2]) == (cat in classes)
        seen |= classes
    assert seen == set(range(6)) and dataset.class_names == SYNTHETIC_NAMES


def test_a_dataset_names_its_classes_and_voc_has_its_twenty_one(synthetic_root, tmp_path):
    assert VOCSegmentation(synthetic_root, "train").class_names == SYNTHETIC_NAMES == (
        "background", "aeroplane", "cat", "dog", "person", "train")
    voc = tmp_path / "voc"
    shutil.copytree(synthetic_root, voc)
    (voc / "VOC2012" / "classes.txt").unlink()
    assert VOCSegmentation(voc, "train").class_names == anp.data.VOC_CLASSES


def test_a_synthetic_kind_is_checked():
    with pytest.raises(ValueError, match="kind must be one of shapes, ablation"):
        make_synthetic_voc("unused", kind="cityscapes")
