"""DeepLabv3: shapes, gradients, output stride at inference, the field of view, torchvision."""

import warnings

import numpy as np
import pytest

import atrousnp as anp
from atrousnp import models

rng = np.random.default_rng


def conv_geometry(module):
    return [(name, m.stride, m.padding, m.dilation) for name, m in module.named_modules()
            if isinstance(m, anp.nn.Conv2d)]


@pytest.mark.full_model
@pytest.mark.parametrize("head", ["aspp", "cascade"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_small_model_shapes_on_odd_inputs(backend, head, output_stride):
    model = models.deeplabv3_small(num_classes=5, output_stride=output_stride, head=head, rng=rng(0))
    model.eval()
    assert model(anp.randn(1, 3, 37, 29, rng=rng(1))).shape == (1, 5, 37, 29)
    assert model.backbone(anp.randn(1, 3, 64, 64, rng=rng(1))).shape[-1] == 64 // output_stride


@pytest.mark.parametrize("make", [models.deeplabv3_resnet50, models.deeplabv3_resnet101])
def test_large_constructors(make):
    model = make(num_classes=3, output_stride=16, rng=rng(0)).eval()
    with anp.no_grad():
        assert model(anp.randn(1, 3, 33, 35, rng=rng(1))).shape == (1, 3, 33, 35)


@pytest.mark.parametrize("head", ["aspp", "cascade"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_resnet18_every_head_and_output_stride(head, output_stride):
    model = models.deeplabv3_resnet18(num_classes=4, output_stride=output_stride, head=head, rng=rng(0)).eval()
    with anp.no_grad():
        assert model(anp.randn(1, 3, 35, 31, rng=rng(1))).shape == (1, 4, 35, 31)


def test_resnet50_layer4_rates_with_multi_grid():
    model = models.deeplabv3_resnet50(output_stride=16, multi_grid=(1, 2, 4), rng=rng(0))
    layer4 = model.backbone.layer4
    assert [unit.conv2.dilation for unit in layer4] == [2, 4, 8]
    assert layer4[0].conv2.stride == 1 and model.backbone.layer3[0].conv2.stride == 2
    assert model.classifier[0].rates == (6, 12, 18)
    model.set_output_stride(8)
    assert [unit.conv2.dilation for unit in layer4] == [4, 8, 16]
    assert [unit.conv2.dilation for unit in model.backbone.layer3] == [1] + [2] * 5
    assert model.classifier[0].rates == (12, 24, 36)


def test_cascade_rates_double_block_to_block():
    model = models.deeplabv3_resnet50(output_stride=16, head="cascade", rng=rng(0))
    rates = [[unit.conv2.dilation for unit in getattr(model.classifier, f"block{b}")] for b in (5, 6, 7)]
    assert rates == [[4, 4, 4], [8, 8, 8], [16, 16, 16]]


@pytest.mark.full_model
def test_every_parameter_receives_a_gradient(backend):
    for head in ("aspp", "cascade"):
        model = models.deeplabv3_small(num_classes=4, head=head, rng=rng(0))
        logits = model(anp.randn(2, 3, 33, 33, rng=rng(1)))
        anp.functional.cross_entropy(logits, rng(2).integers(0, 4, (2, 33, 33))).backward()
        missing = [name for name, p in model.named_parameters() if p.grad is None]
        assert not missing, missing


@pytest.mark.full_model
def test_output_stride_round_trip_restores_the_exact_logits(backend):
    model = models.deeplabv3_small(num_classes=3, output_stride=16, multi_grid=(2,), rng=rng(0)).eval()
    x = anp.randn(1, 3, 41, 41, rng=rng(1))
    before, geometry = model(x).numpy(), conv_geometry(model)
    assert not np.allclose(model.set_output_stride(8)(x).numpy(), before)
    np.testing.assert_array_equal(model.set_output_stride(16)(x).numpy(), before)
    assert conv_geometry(model) == geometry


def test_dilated_convs_store_their_weights_tap_by_tap_and_keep_their_values():
    """Whatever the output stride, each dilated 3x3 conv's weight lies in memory as a contiguous
    (kh, kw, out, in), the by-tap path's layout (nn.Conv2d.lay_out_weight), and every undilated
    one in NumPy's default order, also after it was dilated at another output stride (as an
    evaluation at output stride 8 in the middle of training at 16 leaves layer3); shapes, values
    and the state dict are unchanged."""
    def tap_major(conv):
        return conv.weight.data.transpose(2, 3, 0, 1).flags.c_contiguous

    model = models.deeplabv3_small(num_classes=3, output_stride=16, multi_grid=(2,), rng=rng(0))
    state = {name: value.copy() for name, value in model.state_dict().items()}
    for output_stride in (8, 16, 32, 16):
        model.set_output_stride(output_stride)
        convs = [m for m in model.modules() if isinstance(m, anp.nn.Conv2d) and m.kernel_size == (3, 3)]
        dilated = [conv for conv in convs if conv.dilation not in (1, (1, 1))]
        undilated = [conv for conv in convs if conv not in dilated]
        assert dilated and all(map(tap_major, dilated)), output_stride
        assert undilated and all(conv.weight.data.flags.c_contiguous for conv in undilated), output_stride
        for name, value in model.state_dict().items():
            np.testing.assert_array_equal(value, state[name])
            assert value.shape == state[name].shape


@pytest.mark.full_model
def test_higher_rate_widens_the_field_of_view(backend):
    """The paper's point, measured: d(centre output)/d(input) is non-zero over a wider window
    when layer4 runs at a higher atrous rate. 513 pixels (a 33x33 feature map) keep every tap
    of the centre pixel inside the map, and leave the rate-2 field narrower than the image."""
    def field_width(multi_grid):
        model = models.deeplabv3_small(num_classes=2, output_stride=16, multi_grid=multi_grid,
                                       image_pooling=False, rng=rng(0)).eval()
        x = anp.tensor(rng(1).standard_normal((1, 3, 513, 513)).astype(np.float32), requires_grad=True)
        y = model.backbone(x)
        centre = y[0, :, y.shape[2] // 2, y.shape[3] // 2].sum()
        centre.backward()
        columns = np.nonzero(np.abs(x.grad.numpy()).sum(axis=(0, 1, 2)) > 0)[0]
        return columns.max() - columns.min() + 1
    narrow, wide = field_width((1,)), field_width((4,))   # layer4 at rate 2, then at rate 8
    assert narrow < 513 and wide > narrow + 100


@pytest.mark.full_model
def test_batch_of_one_with_image_pooling_needs_eval_mode(backend):
    model = models.deeplabv3_small(num_classes=3, rng=rng(0))
    x = anp.randn(1, 3, 33, 33, rng=rng(1))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(x)
    model.eval()
    assert model(x).shape == (1, 3, 33, 33)


def test_bad_arguments():
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32, got 4"):
        models.deeplabv3_small(output_stride=4)
    with pytest.raises(ValueError, match="multi_grid .* one factor per unit"):
        models.deeplabv3_resnet50(multi_grid=(1, 2))
    with pytest.raises(ValueError, match="head must be"):
        models.deeplabv3_small(head="fcn")


def torchvision_deeplabv3(torch, output_stride):
    """torchvision's DeepLabV3-ResNet-50 built by its own code: its constructor (output stride 8,
    ASPP rates 12/24/36), or at output stride 16 from its parts (layer4 dilated, rates 6/12/18)."""
    from torchvision.models import resnet50
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation import deeplabv3_resnet50
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
    torch.manual_seed(0)
    model = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    if output_stride == 16:
        backbone = resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
        rebuilt = DeepLabV3(IntermediateLayerGetter(backbone, {"layer4": "out"}),
                            DeepLabHead(2048, 21, atrous_rates=(6, 12, 18)))
        rebuilt.load_state_dict(model.state_dict(), strict=False)  # the same weights, minus the aux head
        model = rebuilt
    # Random running statistics, so that eval-mode batch norm is exercised for real.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("output_stride", [8, 16])
def test_torchvision_weights_give_torchvision_logits(output_stride):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    reference = torchvision_deeplabv3(torch, output_stride)
    state = {name: value.numpy() for name, value in reference.state_dict().items()}
    state.update({"aux_classifier.0.weight": np.zeros((256, 1024, 3, 3), np.float32)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = models.from_torchvision(state, output_stride=output_stride).eval()
    assert any("auxiliary" in str(w.message) for w in caught)
    x = np.random.default_rng(0).standard_normal((1, 3, 67, 53)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))["out"].numpy()
    with anp.no_grad():
        got = model(anp.tensor(x)).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_convert_torchvision_weights_script(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    import importlib.util
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "examples" / "convert_torchvision_weights.py"
    spec = importlib.util.spec_from_file_location("convert", script)
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    reference = torchvision_deeplabv3(torch, 8)
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    convert.main([str(tmp_path / "tv.pth"), str(tmp_path / "tv.npz")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = models.from_torchvision(anp.load(tmp_path / "tv.npz")["model"]).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 33, 33)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))["out"].numpy()
    with anp.no_grad():
        np.testing.assert_allclose(model(anp.tensor(x)).numpy(), expected, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("output_stride,multi_grid,layer3,layer4,aspp", [
    # No atrous convolution at 32: every stage downsamples in its first unit.
    (32, None, [(2, 1)] + [(1, 1)] * 5, [(2, 1), (1, 1), (1, 1)], (3, 6, 9)),
    # 16: block4 keeps the stride 16 map and dilates by 2 (its first unit keeps block3's rate, as torchvision).
    (16, None, [(2, 1)] + [(1, 1)] * 5, [(1, 1), (1, 2), (1, 2)], (6, 12, 18)),
    # The paper (§3.2): output stride 16 with multi-grid (1, 2, 4) gives block4 rates (2, 4, 8).
    (16, (1, 2, 4), [(2, 1)] + [(1, 1)] * 5, [(1, 2), (1, 4), (1, 8)], (6, 12, 18)),
    # 8: block3 dilates by 2 and block4 by 4, the multi-grid scales block4, and ASPP's rates double (§3.3).
    (8, (1, 2, 4), [(1, 1)] + [(1, 2)] * 5, [(1, 4), (1, 8), (1, 16)], (12, 24, 36)),
])
def test_the_atrous_plan_is_the_papers(output_stride, multi_grid, layer3, layer4, aspp):
    plan = models.atrous_plan(output_stride, multi_grid)
    assert [plan[f"backbone.layer3.{i}"] for i in range(6)] == layer3
    assert [plan[f"backbone.layer4.{i}"] for i in range(3)] == layer4
    assert tuple(plan[f"classifier.0.convs.{i}"][1] for i in (1, 2, 3)) == aspp
    assert plan["backbone.layer2.0"] == (2, 1)
    model = models.deeplabv3_resnet50(output_stride=output_stride, multi_grid=multi_grid, rng=rng(0))
    assert [unit.conv2.dilation for unit in model.backbone.layer4] == [rate for _, rate in layer4]
    assert model.classifier[0].rates == aspp


def test_the_cascade_plan_doubles_block4s_rate_block_to_block():
    plan = models.atrous_plan(16, (1, 2, 4), head="cascade")
    assert [plan[f"classifier.block{b}.{i}"][1] for b in (5, 6, 7) for i in range(3)] == \
        [4, 8, 16, 8, 16, 32, 16, 32, 64]


@pytest.mark.parametrize("blocks", [0, 1, 2, 3])
def test_cascade_depth_runs_from_block4_to_block7(blocks):
    """Table 2's rows: the score conv on block4 itself (0), or after blocks 5.. up to 7 (3)."""
    model = models.deeplabv3_small(layers=(1, 1, 1, 3), head="cascade", cascade_blocks=blocks,
                                   multi_grid=(1, 2, 1), num_classes=3, rng=rng(0))
    names = {name.split(".")[1] for name, _ in model.named_modules() if name.startswith("classifier.block")}
    assert names == {f"block{5 + i}" for i in range(blocks)}
    plan = models.atrous_plan(16, (1, 2, 1), head="cascade", units=(1, 1, 1, 3), cascade_blocks=blocks)
    for path, (stride, dilation) in plan.items():
        conv = model.get_submodule(path).conv1
        assert (conv.stride, conv.dilation) == (stride, dilation), path
    assert model(anp.tensor(rng(1).standard_normal((2, 3, 33, 33), np.float32))).shape == (2, 3, 33, 33)


def test_the_small_backbone_takes_a_three_unit_block4_for_multi_grid():
    model = models.deeplabv3_small(layers=(1, 1, 1, 3), multi_grid=(1, 2, 4), rng=rng(0))
    assert [unit.conv1.dilation for unit in model.backbone.layer4] == [2, 4, 8]
    with pytest.raises(ValueError, match="one factor per unit"):
        models.deeplabv3_small(multi_grid=(1, 2, 4), rng=rng(0))
    with pytest.raises(ValueError, match="layers must be four positive unit counts"):
        models.deeplabv3_small(layers=(1, 1, 3), rng=rng(0))
    with pytest.raises(ValueError, match="cascade_blocks must be 0, 1, 2 or 3"):
        models.deeplabv3_small(head="cascade", cascade_blocks=4, rng=rng(0))
