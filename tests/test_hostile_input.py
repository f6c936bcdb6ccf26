"""What atrousnp promises a hostile but fair user, in one place: settings are checked where they
enter, files are read without trusting what they declare, and a diverging run stops loudly,
keeping its last finite checkpoint."""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import atrousnp as anp
import atrousnp.train as training
from atrousnp.train import strategies
from atrousnp.data import read_class_names
from atrousnp.files import load_json, save_json
from atrousnp.train import DivergenceError, check_out, check_settings, train
from helpers import tiny_train_config

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("name", ["lr", "momentum", "weight_decay", "dampening"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.1, "0.1"])
def test_sgd_refuses_a_non_finite_negative_or_non_number_setting(name, value):
    settings = dict(lr=0.1, momentum=0.9, weight_decay=1e-4, dampening=0.0)
    settings[name] = value
    with pytest.raises(ValueError, match=f"SGD: {name} must be a finite number >= 0, got {value!r}"):
        anp.optim.SGD([anp.nn.Parameter(np.zeros(2))], **settings)
    anp.optim.SGD([anp.nn.Parameter(np.zeros(2))], lr=np.float32(0.1))  # NumPy numbers are numbers


def test_a_loss_that_turns_nan_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    calls, cross_entropy = [], anp.functional.cross_entropy

    def loss_turning_nan(logits, target, *args, **kwargs):
        calls.append(1)
        loss = cross_entropy(logits, target, *args, **kwargs)
        return loss * float("nan") if len(calls) >= 5 else loss

    monkeypatch.setattr(anp.functional, "cross_entropy", loss_turning_nan)
    with pytest.raises(DivergenceError, match=r"diverged at iteration 5: the loss is nan; the checkpoint of "
                                              r"iteration 3 in .* is kept"):
        train(tiny_train_config(tmp_path))
    state = anp.load(tmp_path / "run" / "checkpoint.npz")
    assert state["iteration"] == 3
    assert all(np.isfinite(value).all() for value in state["model"].values())
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_the_example_exits_non_zero_on_divergence_and_evaluate_refuses_a_nan_checkpoint(tmp_path):
    root = anp.data.make_synthetic_voc(tmp_path / "voc", 6, 2, 40, seed=0)
    common = ["--voc-root", str(root), "--crop-size", "40", "--batch-size", "2", "--eval-every", "4",
              "--checkpoint-every", "1", "--backend", "numpy", "--out", str(tmp_path / "run")]
    run = subprocess.run([sys.executable, str(EXAMPLES / "train_voc_subset.py"), "--iterations", "4",
                          "--lr", "1e30", *common], capture_output=True, text=True, timeout=600)
    assert run.returncode != 0 and "training diverged at iteration" in run.stderr, run.stderr[-2000:]
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    if checkpoint.exists():  # whatever was kept is finite
        assert all(np.isfinite(v).all() for v in anp.load(checkpoint)["model"].values())

    ok = subprocess.run([sys.executable, str(EXAMPLES / "train_voc_subset.py"), "--iterations", "1", "--overwrite",
                         *common], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    state = anp.load(checkpoint)
    state["model"] = {k: np.full_like(v, np.nan) if v.dtype.kind == "f" else v for k, v in state["model"].items()}
    anp.save(tmp_path / "nan.npz", state)
    refused = subprocess.run([sys.executable, str(EXAMPLES / "evaluate.py"), str(tmp_path / "nan.npz"),
                              "--voc-root", str(root), "--backend", "numpy"], capture_output=True, text=True,
                             timeout=600)
    assert refused.returncode != 0 and "not finite" in refused.stderr, refused.stderr[-2000:]


@pytest.mark.parametrize("setting,value,message", [
    ("eval_every", 0, "eval_every must be a positive integer, got 0"),
    ("iterations", -3, "iterations must be a positive integer, got -3"),
    ("checkpoint_every", 2.5, "checkpoint_every must be a positive integer, got 2.5"),
    ("max_images", -1, r"max_images must be a positive integer or None \(every image\), got -1"),
    ("eval_scales", (-1.0, 0.0), r"eval_scales must be positive finite numbers, got \(-1.0, 0.0\)"),
    ("eval_scales", (float("nan"),), r"eval_scales must be positive finite numbers, got \(nan,\)"),
    ("lr", float("nan"), "lr must be a finite number >= 0, got nan"),
    ("batch_size", 1, "batch_size must be at least 2"),
])
def test_a_setting_that_cannot_work_is_refused_before_anything_runs(tmp_path, setting, value, message):
    with pytest.raises(ValueError, match=message):
        check_settings(tiny_train_config(tmp_path, **{setting: value}))
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


def test_out_paths_that_cannot_hold_a_run_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out must be a folder"):
        check_out(tiny_train_config(tmp_path, out=str(tmp_path / "file")))
    (tmp_path / "run" / "checkpoint.npz").mkdir(parents=True)
    with pytest.raises(ValueError, match="checkpoint.npz is a folder"):
        check_out(tiny_train_config(tmp_path))


def test_a_new_run_never_replaces_an_earlier_one_unless_told(tmp_path):
    train(tiny_train_config(tmp_path, iterations=2))
    before = (tmp_path / "run" / "checkpoint.npz").read_bytes()
    with pytest.raises(FileExistsError, match="pass --resume to continue it, or --overwrite"):
        train(tiny_train_config(tmp_path, iterations=2, seed=1))
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == before
    train(tiny_train_config(tmp_path, iterations=3, resume=True))           # continuing is allowed
    train(tiny_train_config(tmp_path, iterations=2, seed=1, overwrite=True))  # and so is replacing, when asked
    assert anp.load(tmp_path / "run" / "checkpoint.npz")["iteration"] == 2


def test_the_example_names_a_bad_setting_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, str(EXAMPLES / "train_voc_subset.py"), "--eval-every", "0",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert run.returncode != 0 and run.stderr.strip() == "error: eval_every must be a positive integer, got 0"


# -- dtype rules: parameters keep their dtype; real-valued ops take floats of one dtype ----------

REAL_VALUED_OPS = {
    "conv2d": lambda x: anp.functional.conv2d(x, anp.tensor(np.ones((1, 2, 1, 1), np.float32))),
    "batch_norm": lambda x: anp.nn.BatchNorm2d(2)(x),
    "avg_pool2d": lambda x: anp.functional.avg_pool2d(x, 2),
    "adaptive_avg_pool2d": lambda x: anp.functional.adaptive_avg_pool2d(x, 1),
    "interpolate": lambda x: anp.functional.interpolate(x, size=4),
    "log_softmax": lambda x: anp.functional.log_softmax(x),
    "cross_entropy": lambda x: anp.functional.cross_entropy(x, np.zeros((2, 2, 2), np.int64)),
    "dropout": lambda x: anp.functional.dropout(x, 0.5),
}


@pytest.mark.parametrize("op", REAL_VALUED_OPS)
@pytest.mark.parametrize("dtype", [np.uint8, np.int64, bool])
def test_real_valued_ops_refuse_integer_and_bool_inputs(backend, op, dtype):
    x = anp.tensor(np.full((2, 2, 2, 2), 30, dtype))  # uint8 conv would wrap 900 to 132; bool would OR
    with pytest.raises(TypeError, match=rf"{op}: \w+ must be a floating-point tensor, got dtype {np.dtype(dtype)}"):
        REAL_VALUED_OPS[op](x)


@pytest.mark.parametrize("op", ["conv2d", "batch_norm"])
def test_a_float64_batch_through_a_float32_layer_is_refused_naming_both(backend, op):
    with pytest.raises(TypeError, match=rf"{op}: x is float64 but \w+ is float32; .* x.astype\('float32'\)"):
        REAL_VALUED_OPS[op](anp.tensor(np.ones((2, 2, 2, 2))))


def test_parameters_and_their_gradients_keep_their_dtype_through_mixed_arithmetic(backend):
    """float32 * float64 is float64 (NumPy's promotion), but the float32 parameter's gradient and
    its SGD update stay float32, step after step."""
    weight = anp.nn.Parameter(np.ones(3, np.float32))
    optimizer = anp.optim.SGD([weight], lr=0.1, momentum=0.9, weight_decay=1e-4)
    for _ in range(2):
        optimizer.zero_grad()
        product = weight * anp.tensor(np.arange(3.0))
        assert product.dtype == np.float64
        product.sum().backward()
        assert weight.grad.dtype == np.float32
        optimizer.step()
        assert weight.dtype == np.float32
    np.testing.assert_allclose(weight.numpy(), 1 - 0.1 * np.arange(3) * (1 + 1.9) - 0.1 * 1e-4 * (1 + 1.9), rtol=1e-3)


def test_backward_casts_a_given_gradient_to_the_output_dtype_and_refuses_an_integer_one(backend):
    x = anp.tensor(np.ones(3, np.float32), requires_grad=True)
    (x * 2).backward(np.ones(3))  # float64 given for a float32 output
    assert x.grad.dtype == np.float32
    with pytest.raises(TypeError, match="backward: gradient must be floating point, got dtype int64"):
        (x * 2).backward(np.ones(3, np.int64))


def test_float16_is_refused_in_one_line_where_a_backend_cannot_compute_it(backend):
    half = np.ones((1, 2, 3, 3), np.float16)
    if backend == "numpy":  # NumPy computes float16 itself
        assert anp.functional.conv2d(anp.tensor(half), anp.tensor(half[:, :, :1, :1])).dtype == np.float16
        return
    for make in (lambda: anp.tensor(half), lambda: anp.tensor(np.ones(2)).astype("float16"),
                 lambda: anp.tensor(np.ones(2, np.float32)) + np.ones(2, np.float16)):
        with pytest.raises(TypeError, match=f"the {backend} backend computes in float32 and float64, not float16"):
            make()


def test_an_empty_batch_is_refused_naming_its_shape(backend):
    model = anp.nn.Conv2d(3, 2, 3)
    with pytest.raises(ValueError, match=r"conv2d: x is empty \(shape \(0, 3, 8, 8\)\)"):
        model(anp.tensor(np.zeros((0, 3, 8, 8), np.float32)))
    with pytest.raises(ValueError, match=r"batch_norm: x is empty"):
        anp.nn.BatchNorm2d(3)(anp.tensor(np.zeros((0, 3, 8, 8), np.float32)))


# -- state dicts: every value is checked where it enters, and a refused one changes nothing ------

@pytest.mark.parametrize("value,message", [
    (np.array([None, None], dtype=object), "bias must be a numeric array, got an array of dtype object"),
    (np.array(["a", "b"]), "bias must be a numeric array, got an array of dtype <U1"),
    (None, "bias must be a numeric array, got NoneType"),
    (np.ones(1, np.float32), r"shape mismatch for bias: checkpoint \(1,\), model \(2,\)"),  # broadcastable is not enough
])
def test_load_state_dict_refuses_a_value_that_is_not_a_numeric_array_of_the_shape(value, message):
    layer = anp.nn.BatchNorm2d(2)
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    state = dict(before, weight=np.full(2, 7, np.float32), bias=value)  # weight comes first and is fine
    with pytest.raises(ValueError, match="load_state_dict: " + message):
        layer.load_state_dict(state)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("change,message", [
    (dict(lr=[float("nan")]), "SGD: lr must be a finite number >= 0, got nan"),
    (dict(lr=0.5), r"SGD.load_state_dict: lr must hold one rate per group \(1\), got 0.5"),
    ({"momentum_buffer.0": np.ones((1, 3))}, r"momentum_buffer.0 has shape \(1, 3\), expected \(2, 3\)"),
    ({"momentum_buffer.0": np.array([[None] * 3] * 2)}, "momentum_buffer.0 must be a numeric array"),
    ({"momentum_buffer.5": np.ones((2, 3))}, r"unexpected entries momentum_buffer.5 \(this optimiser has 1"),
])
def test_sgd_load_state_dict_checks_everything_before_changing_anything(change, message):
    weight = anp.nn.Parameter(np.ones((2, 3), np.float32))
    optimizer = anp.optim.SGD([weight], lr=0.1, momentum=0.9)
    (weight * 2).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    with pytest.raises(ValueError, match=message):
        optimizer.load_state_dict(dict(state, **change))
    assert optimizer.param_groups[0]["lr"] == 0.1
    np.testing.assert_array_equal(optimizer.state_dict()["momentum_buffer.0"], state["momentum_buffer.0"])


# -- data is checked before the first iteration; a checkpoint comes before each evaluation --------

def _broken_voc(tmp_path):
    """A synthetic set whose val split has a missing image, an out-of-range label and a label
    of the wrong size: each one a file that would otherwise fail the run at its first evaluation."""
    root = anp.data.make_synthetic_voc(tmp_path / "voc", 6, 4, 40, seed=0)
    folder = root / "VOC2012"
    val = (folder / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    (folder / "JPEGImages" / f"{val[0]}.jpg").unlink()
    Image.fromarray(np.full((40, 40), 30, np.uint8), mode="L").save(folder / "SegmentationClass" / f"{val[1]}.png")
    Image.fromarray(np.zeros((20, 40), np.uint8), mode="L").save(folder / "SegmentationClass" / f"{val[2]}.png")
    return root, val


def test_a_broken_val_split_is_refused_before_the_first_iteration_naming_each_bad_file(tmp_path, monkeypatch):
    root, val = _broken_voc(tmp_path)
    steps = []
    monkeypatch.setattr(strategies, "random_batch", lambda *a: steps.append(1))
    with pytest.raises(ValueError) as refused:
        train(tiny_train_config(tmp_path, voc_root=str(root)))
    message = str(refused.value)
    assert "3 of the 4 images of split 'val'" in message
    assert f"missing file {root / 'VOC2012' / 'JPEGImages' / val[0]}.jpg" in message
    assert f"{val[1]}.png: label values [30] are not classes 0..5 nor the ignore label 255" in message
    assert f"{val[2]}.png: label is 40x20 but its image {val[2]}.jpg is 40x40" in message
    assert not steps and not (tmp_path / "run" / "checkpoint.npz").exists()


def test_an_empty_split_is_named(tmp_path):
    root = anp.data.make_synthetic_voc(tmp_path / "voc", 2, 2, 40, seed=0)
    (root / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"split 'val' is empty: .*val.txt lists no image ids"):
        anp.data.VOCSegmentation(root, "val")


def test_a_failing_evaluation_loses_no_training(tmp_path, monkeypatch):
    def broken_evaluation(*args, **kwargs):
        raise OSError("the disk holding the val set went away")

    monkeypatch.setattr(strategies, "evaluate", broken_evaluation)
    with pytest.raises(OSError, match="went away"):
        train(tiny_train_config(tmp_path, eval_every=3, checkpoint_every=5))
    assert anp.load(tmp_path / "run" / "checkpoint.npz")["iteration"] == 3  # resume starts from here


def test_two_runs_into_one_folder_do_not_both_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with training.folder_lock(out):  # as a first run holds it
        with pytest.raises(training.FolderInUseError, match=rf"{out} is in use by another training run \(pid \d+ on "):
            train(tiny_train_config(tmp_path))
    assert not (out / "checkpoint.npz").exists()
    train(tiny_train_config(tmp_path, iterations=1))  # free once the first run ends


# -- class names, the run folder's lock, resuming, and files the CLI writes -----------------------

@pytest.mark.parametrize("text,message", [
    ("background\ncat\ncat\n", r"names.txt, line 3: 'cat' is class 1 already"),
    ("\n\n", r"names.txt lists no class names"),
    ("background\ncr\rack\n", r"names.txt, line 2: 'cr\\rack' holds U\+000D"),
    ("background\ncr\x0cack\n", r"names.txt, line 2: 'cr\\x0cack' holds U\+000C"),
    ("background\ncr\u2028ack\n", r"names.txt, line 2: 'cr\\u2028ack' holds U\+2028 \(LINE SEPARATOR\)"),
    ("background\n\ncat\n", r"names.txt, line 2: '' is not a class name"),
])
def test_class_names_are_one_per_line_distinct_and_printable(tmp_path, text, message):
    (tmp_path / "names.txt").write_text(text, newline="")
    with pytest.raises(ValueError, match=message):
        read_class_names(tmp_path / "names.txt")


def test_class_names_from_windows_files_read_and_undecodable_ones_are_named(tmp_path):
    (tmp_path / "names.txt").write_bytes("\ufeffbackground\r\nrust\r\nno\u00a0entry\r\n\U0001f469\u200d\U0001f52c\r\n\r\n"
                                         .encode())
    assert read_class_names(str(tmp_path / "names.txt")) == ("background", "rust", "no\u00a0entry",
                                                             "\U0001f469\u200d\U0001f52c")
    (tmp_path / "latin.txt").write_bytes("background\nrouill\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.txt is not UTF-8 text"):
        read_class_names(tmp_path / "latin.txt")


def test_the_example_refuses_duplicate_class_names_naming_the_file_and_line(tmp_path):
    (tmp_path / "names.txt").write_text("background\ncat\ncat\n")
    run = subprocess.run([sys.executable, str(EXAMPLES / "train_voc_subset.py"), "--class-names",
                          str(tmp_path / "names.txt"), "--out", str(tmp_path / "run")], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2 and "names.txt, line 3: 'cat' is class 1 already" in run.stderr, run.stderr


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").symlink_to(victim)
    with pytest.raises(ValueError, match=r"\.lock cannot be the run's lock file"):
        train(tiny_train_config(tmp_path, iterations=1))
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir, lambda lock: os.link(lock.parent.parent / "victim", lock)],
                         ids=["a pipe", "a folder", "a hard link"])
def test_a_lock_file_that_is_not_a_plain_file_of_its_own_is_refused_without_waiting(tmp_path, make):
    (tmp_path / "victim").write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    make(out / ".lock")
    with pytest.raises(ValueError, match=r"\.lock (is not a plain file of its own|cannot be the run's lock file)"):
        train(tiny_train_config(tmp_path, iterations=1))
    assert (tmp_path / "victim").read_text() == "precious"


def test_resume_refuses_other_settings_and_says_what_it_resumes(tmp_path, capsys):
    train(tiny_train_config(tmp_path, iterations=2))
    for change, message in ((dict(backbone="resnet18"), "backbone was 'small', now 'resnet18'"),
                            (dict(lr=0.5), "lr was 0.02, now 0.5"), (dict(dtype="float64"), "dtype was 'float32'"),
                            (dict(class_names=tuple(f"c{i}" for i in range(6))), r"class_names was \['background', .*now \['c0'"),
                            (dict(iterations=1), r"is at iteration 2, past iterations \(1\)")):
        with pytest.raises(ValueError, match=rf"resume: .*checkpoint.npz .*{message}"):
            train(tiny_train_config(tmp_path, resume=True, **{"iterations": 3, **change}))
    with pytest.raises(ValueError, match="resume and overwrite contradict each other"):
        check_out(tiny_train_config(tmp_path, resume=True, overwrite=True))
    with pytest.raises(FileNotFoundError, match=r"resume: there is no checkpoint at .*elsewhere.*checkpoint.npz"):
        check_out(tiny_train_config(tmp_path, resume=True, out=str(tmp_path / "elsewhere")))
    train(tiny_train_config(tmp_path, iterations=3, resume=True, progress=True))
    assert f"resuming {tmp_path / 'run' / 'checkpoint.npz'} at iteration 2 of 3" in capsys.readouterr().out


def test_json_files_are_written_atomically_and_a_broken_one_is_named(tmp_path):
    save_json(tmp_path / "metrics.json", {"miou": 0.5})
    with pytest.raises(TypeError):
        save_json(tmp_path / "metrics.json", {"miou": object()})  # fails while writing
    assert load_json(tmp_path / "metrics.json") == {"miou": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    (tmp_path / "evals.json").write_text('{"os16": 0.8')
    with pytest.raises(ValueError, match=r"evals.json is not valid JSON"):
        load_json(tmp_path / "evals.json")


def test_a_checkpoint_member_declaring_terabytes_is_refused_by_name(tmp_path):
    anp.save(tmp_path / "ck.npz", {"w": np.zeros(3)})
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (2 ** 39,)  # 4 TiB of float64
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, header)
    with zipfile.ZipFile(tmp_path / "ck.npz", "a") as archive:
        archive.writestr("arrays/huge.npy", member.getvalue() + bytes(8))
    with pytest.raises(ValueError, match=r"ck.npz is not a readable checkpoint .*member arrays/huge.npy declares "
                                         r"4398046511104 bytes"):
        anp.load(tmp_path / "ck.npz")


def write_npz(path, members, compression=zipfile.ZIP_STORED):
    """An .npz written member by member: name -> array."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, array in members.items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(name, buffer.getvalue())


@pytest.mark.parametrize("kind", ["deep tree", "compressed", "complex member", "tree not a dict"])
def test_a_malformed_checkpoint_is_one_error_naming_the_file(tmp_path, kind):
    meta = {"format": "atrousnp-checkpoint-2", "arrays": [], "tree": {}}
    members, compression = {}, zipfile.ZIP_STORED
    if kind == "deep tree":
        meta = '{"format": "atrousnp-checkpoint-2", "arrays": [], "tree": ' + "[" * 5000 + "]" * 5000 + "}"
    elif kind == "compressed":
        compression = zipfile.ZIP_DEFLATED
    elif kind == "complex member":
        members["arrays/w.npy"] = np.zeros(2, np.complex64)
    else:
        meta = "[1, 2]"
    text = meta if isinstance(meta, str) else json.dumps(meta)
    members["__meta__.json.npy"] = np.frombuffer(text.encode(), np.uint8)
    write_npz(tmp_path / "bad.npz", members, compression)
    with pytest.raises(ValueError, match=r"load: .*bad.npz"):
        anp.load(tmp_path / "bad.npz")


def test_a_pickle_given_as_a_checkpoint_is_refused_without_advice_about_pickles(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "objects.npz", "w") as archive:
        archive.write(tmp_path / "objects.npy", "arrays/objects.npy")
    (tmp_path / "text.npz").write_text("hello")
    for name in ("objects.npz", "text.npz", "objects.npy"):
        with pytest.raises(ValueError, match=rf"{name} is not a readable checkpoint") as refused:
            anp.load(tmp_path / name)
        assert "allow_pickle" not in str(refused.value)


def test_a_val_image_truncated_after_its_header_is_named_before_training(tmp_path):
    root = anp.data.make_synthetic_voc(tmp_path / "voc", 4, 2, 40, seed=0)
    folder = root / "VOC2012"
    image_id = (folder / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[0]
    jpeg = folder / "JPEGImages" / f"{image_id}.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:400])
    with pytest.raises(ValueError, match=rf"1 of the 2 images of split 'val'.*\n  cannot read .*{image_id}.jpg"):
        anp.data.VOCSegmentation(root, "val").check(21)


def test_a_negative_running_variance_is_refused_when_weights_load(tmp_path):
    model = anp.models.deeplabv3_small(num_classes=3, rng=np.random.default_rng(0))
    state = model.state_dict()
    before = {name: value.copy() for name, value in state.items()}
    state["backbone.bn1.running_var"] = -np.ones_like(state["backbone.bn1.running_var"])
    with pytest.raises(ValueError, match=r"backbone.bn1.running_var has 16 negative values \(e.g. -1.0\)"):
        model.load_state_dict(state)
    with pytest.raises(ValueError, match=r"bn1.running_var has 16 negative values"):
        model.backbone.load_torchvision_backbone({k[len("backbone."):]: v for k, v in state.items()
                                                  if k.startswith("backbone.")})
    for name, value in model.state_dict().items():  # nothing changed
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize("build,message", [
    (lambda: anp.nn.Conv2d(0, 4, 3), r"Conv2d: in_channels must be a positive int, got 0"),
    (lambda: anp.nn.Conv2d(3, -4, 3), r"Conv2d: out_channels must be a positive int, got -4"),
    (lambda: anp.nn.Conv2d(3, 4, 0), r"Conv2d: kernel_size must be >= 1, got 0"),
    (lambda: anp.nn.Conv2d(3, 4, 3, stride=0), r"Conv2d: stride must be >= 1, got 0"),
    (lambda: anp.nn.Conv2d(3, 4, 3, dilation=(1, 0)), r"Conv2d: dilation must be >= 1"),
    (lambda: anp.nn.Conv2d(3, 4, 3, padding=-1), r"Conv2d: padding must be >= 0"),
    (lambda: anp.nn.BatchNorm2d(0), r"BatchNorm2d: num_features must be a positive int, got 0"),
    (lambda: anp.nn.MaxPool2d(0), r"MaxPool2d: kernel_size must be >= 1, got 0"),
    (lambda: anp.nn.AvgPool2d(2, stride=0), r"AvgPool2d: stride must be >= 1, got 0"),
    (lambda: anp.nn.Conv2d(3, 4, 3, padding="bogus"), r"Conv2d: padding must be an int or a pair of ints"),
    (lambda: anp.nn.Conv2d(3, 4, 3, stride=2, padding="same"), r"Conv2d: padding='same' needs stride 1"),
    (lambda: anp.nn.Conv2d(3, 4, 2.5), r"Conv2d: kernel_size must be an int or a pair of ints, got 2.5"),
    (lambda: anp.nn.Conv2d(3, 4, True), r"Conv2d: kernel_size must be an int or a pair of ints, got True"),
    (lambda: anp.nn.MaxPool2d(2, padding=5), r"MaxPool2d: padding 5 must be at most half the kernel"),
    (lambda: anp.nn.AvgPool2d(2, divisor_override=0), r"AvgPool2d: divisor_override must be a positive int"),
    (lambda: anp.nn.BatchNorm2d(4, momentum=None), r"BatchNorm2d: momentum must be a number in \[0, 1\]"),
    (lambda: anp.nn.BatchNorm2d(4, eps=-1), r"BatchNorm2d: eps must be a number > 0, got -1"),
    (lambda: anp.nn.Dropout(1.5), r"Dropout: p must be a number in \[0, 1\), got 1.5"),
    (lambda: anp.nn.Dropout("0.5"), r"Dropout: p must be a number in \[0, 1\), got '0.5'"),
    (lambda: anp.optim.PolyLR(anp.optim.SGD([anp.nn.Parameter(np.zeros(2))], lr=0.1), 10).set_iteration(-1),
     r"PolyLR: iteration must be an int >= 0, got -1"),
    (lambda: anp.optim.PolyLR(anp.optim.SGD([anp.nn.Parameter(np.zeros(2))], lr=0.1), 10, power=-1),
     r"PolyLR: power must be a finite number >= 0, got -1"),
    (lambda: anp.optim.PolyLR(anp.optim.SGD([anp.nn.Parameter(np.zeros(2))], lr=0.1), 10.5),
     r"PolyLR: max_iter must be a positive int, got 10.5"),
])
def test_layers_refuse_settings_that_cannot_work_when_built(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


@pytest.mark.parametrize("setting,message", [
    (dict(multi_grid=(0,)), r"multi_grid \(--multi-grid\) must be positive integers, got \(0,\)"),
    (dict(multi_grid=(-1,)), r"multi_grid \(--multi-grid\) must be positive integers"),
    (dict(backbone_layers=(0, 1, 1, 1)), r"backbone_layers \(--backbone-layers\) must be positive integers"),
    (dict(backbone_layers=(1, 1, 1)), r"backbone_layers \(--backbone-layers\) needs 4 counts"),
    (dict(backbone="nope", multi_grid=(1, 2)), r"backbone must be one of small, resnet18"),
    (dict(aspp_rates=5), r"aspp_rates \(--aspp-rates\) must be positive integers, got 5"),
    (dict(momentum=-0.5), r"momentum must be a finite number >= 0, got -0.5"),
])
def test_architecture_settings_are_refused_naming_the_flag(tmp_path, setting, message):
    with pytest.raises(ValueError, match=message):
        check_settings(tiny_train_config(tmp_path, **setting))


def test_a_multi_grid_that_does_not_fit_layer4_names_the_flag_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"multi_grid \(--multi-grid\) 1,2 has 2 factors, but layer4 of the small "
                                         r"backbone has 1 unit: give one factor per unit; --backbone-layers 1,1,1,2"):
        check_settings(tiny_train_config(tmp_path, multi_grid=(1, 2)))
    check_settings(tiny_train_config(tmp_path, multi_grid=(1, 2), backbone_layers=(1, 1, 1, 2)))


@pytest.mark.parametrize("change,message", [
    (lambda state: state.pop("config"), r"is not a checkpoint of atrousnp's training \(it saves no settings\)"),
    (lambda state: state.update(config="x"), r"is not a checkpoint of atrousnp's training"),
    (lambda state: state["config"].update(aspp_rates=5), r"its saved settings cannot work: aspp_rates"),
    (lambda state: state["config"].update(dtype="object"), r"its saved settings cannot work: dtype"),
    (lambda state: state["config"].update(class_names=["a"] * 6), r"its saved settings cannot work: .*is class 0"),
    (lambda state: state["config"].update(class_names=["a", "b"]), r"class_names has 2 names but num_classes is 6"),
    (lambda state: state.pop("model"), r"holds no model weights"),
])
def test_evaluation_checks_a_checkpoints_saved_settings(tmp_path, change, message):
    train(tiny_train_config(tmp_path, iterations=1))
    state = anp.load(tmp_path / "run" / "checkpoint.npz")
    change(state)
    anp.save(tmp_path / "edited.npz", state)
    with pytest.raises(ValueError, match=message):
        training.load_trained(tmp_path / "edited.npz")


@pytest.mark.parametrize("change", [lambda state: state.pop("iteration"), lambda state: state.update(iteration="1"),
                                    lambda state: state.update(iteration=-5), lambda state: state.update(history=5),
                                    lambda state: state.update(rng="garbage"), lambda state: state.pop("optimizer")],
                         ids=["no iteration", "iteration a string", "negative iteration", "history a number",
                              "rng garbage", "no optimizer"])
def test_resume_refuses_a_checkpoint_that_lacks_what_it_continues_from(tmp_path, change):
    train(tiny_train_config(tmp_path, iterations=1))
    state = anp.load(tmp_path / "run" / "checkpoint.npz")
    change(state)
    anp.save(tmp_path / "run" / "checkpoint.npz", state)
    with pytest.raises(ValueError, match=r"resume: .*checkpoint.npz"):
        train(tiny_train_config(tmp_path, iterations=2, resume=True))


def test_backbone_weights_that_are_not_finite_are_refused_naming_the_file(tmp_path):
    backbone = anp.models.deeplabv3_small(rng=np.random.default_rng(0)).backbone
    state = {name: value.copy() for name, value in backbone.state_dict().items()}
    state["bn1.running_var"][0] = np.nan
    anp.save(tmp_path / "nan.npz", {"model": {f"backbone.{k}": v for k, v in state.items()}})
    with pytest.raises(ValueError, match=r"backbone_weights .*nan.npz: load_torchvision_backbone: "
                                         r"bn1.running_var hold values that are not finite"):
        train(tiny_train_config(tmp_path, iterations=1, backbone_weights=str(tmp_path / "nan.npz")))
