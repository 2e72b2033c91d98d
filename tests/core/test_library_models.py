"""Library networks by name (`core/library_models.py`): adapted to the data, started from a weights file,
and carried by checkpoints and exports as our own networks are."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepmimic.core import checkpoints, library_models, serving
from deepmimic.core.architectures import ArchitectureError, ModelSpec, count_parameters
from deepmimic.core.optimizer import SGD
from deepmimic.errors import UserError

GREY = (1, 8, 8)


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "efficientnet_b0"])
def test_a_torchvision_classifier_is_fitted_to_grey_8x8_images_and_10_classes(name):
    model = ModelSpec(f"torchvision/{name}").build(GREY, 10)
    out = model.eval()(torch.randint(0, 256, (3, *GREY), dtype=torch.uint8))
    assert out.shape == (3, 10)
    conv = first_conv(model)
    assert conv.in_channels == 1 and conv.stride == (1, 1)  # the small stem keeps 8 pixels' resolution


def test_the_head_is_a_fresh_layer_for_the_data_s_classes():
    model = ModelSpec("torchvision/resnet18").build((3, 32, 32), 7)
    assert model[1].net.fc.out_features == 7
    # torchvision's resnet18 has 11,689,512 parameters for 1000 classes: less its fc (512·1000 + 1000) plus ours
    # (512·7 + 7) and the 3×3 stem in place of the 7×7 one (3·64·(9 − 49)).
    assert count_parameters(model) == 11_689_512 - 513_000 + 3_591 - 7_680


def test_resnet_small_stem_is_3x3_stride_1_without_max_pooling_and_standard_keeps_torchvision_s():
    small = ModelSpec("torchvision/resnet18").build((3, 32, 32), 10)[1].net
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    standard = ModelSpec("torchvision/resnet18", stem="standard").build((3, 32, 32), 10)[1].net
    assert standard.conv1.kernel_size == (7, 7) and standard.conv1.stride == (2, 2)
    assert isinstance(standard.maxpool, nn.MaxPool2d)


def test_large_images_get_the_standard_stem_under_auto():
    net = ModelSpec("torchvision/mobilenet_v3_small").build((3, 96, 96), 10)
    assert first_conv(net).stride == (2, 2)


def test_a_network_that_cannot_take_the_images_says_why_in_one_line():
    with pytest.raises(ArchitectureError) as e:
        ModelSpec("torchvision/vit_b_16").check((3, 32, 32), 10)
    assert "does not build for 3×32×32 images" in str(e.value) and "224" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_name_that_is_not_a_torchvision_classifier_is_refused():
    with pytest.raises(ArchitectureError, match="not a torchvision classifier"):
        ModelSpec("torchvision/fasterrcnn_resnet50_fpn").check(GREY, 10)


def test_a_weights_file_starts_the_backbone_and_leaves_the_head_fresh(tmp_path):
    import torchvision

    torch.manual_seed(0)
    source = torchvision.models.resnet18(num_classes=1000)  # an ImageNet-shaped network, as a hub file holds
    torch.save(source.state_dict(), tmp_path / "resnet18.pt")
    torch.manual_seed(1)
    net = ModelSpec("torchvision/resnet18").build((3, 32, 32), 10, weights=str(tmp_path / "resnet18.pt"))[1].net
    assert torch.equal(net.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    assert net.fc.out_features == 10  # the 1000-class head did not fit: fresh


def test_grey_images_take_pretrained_rgb_filters_summed_over_their_channels(tmp_path):
    import torchvision

    source = torchvision.models.mobilenet_v3_small()
    torch.save(source.state_dict(), tmp_path / "w.pt")
    net = ModelSpec("torchvision/mobilenet_v3_small").build(GREY, 10, weights=str(tmp_path / "w.pt"))
    assert torch.allclose(first_conv(net).weight, first_conv(source).weight.sum(1, keepdim=True))


def test_a_file_that_is_not_a_state_dict_is_one_clear_line(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a PyTorch state dict") as e:
        ModelSpec("torchvision/resnet18").build(GREY, 10, weights=str(tmp_path / "w.pt"))
    assert "\n" not in str(e.value)


def test_an_unknown_weights_name_lists_the_known_ones():
    with pytest.raises(UserError, match="IMAGENET1K_V1"):
        ModelSpec("torchvision/resnet18").build(GREY, 10, weights="IMAGENET9K")


def checkpoint(folder, spec: ModelSpec) -> nn.Module:
    folder.mkdir()
    net = spec.build(GREY, 10, [8.0], [4.0])
    meta = {"spec": dataclasses.asdict(spec), "shape": list(GREY), "num_classes": 10, "mean": [8.0], "std": [4.0]}
    checkpoints.save(str(folder), net, SGD(net.parameters(), lr=0.1), 1, [], meta)
    return net.eval()


def test_a_checkpoint_of_a_library_network_loads_back_whole_and_starts_another(tmp_path):
    spec = ModelSpec("torchvision/mobilenet_v3_small")
    net = checkpoint(tmp_path / "ck", spec)
    back = checkpoints.load_model(str(tmp_path / "ck"))
    x = torch.randint(0, 256, (4, *GREY), dtype=torch.uint8)
    assert torch.equal(net(x), back(x))
    started = spec.build(GREY, 10, [8.0], [4.0], weights=str(tmp_path / "ck")).eval()
    assert torch.equal(net(x), started(x))  # our own checkpoint of the adapted network: the head fits too


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_library_network_exports_as_a_black_box_answering_as_it_does(tmp_path, fmt):
    net = checkpoint(tmp_path / "ck", ModelSpec("torchvision/resnet18"))
    images = torch.rand(3, *GREY)
    want = torch.softmax(net(images * 255.0), 1)
    serving.export(net, GREY, fmt, str(tmp_path / f"m.{fmt}"))
    if fmt == "torchscript":
        got = torch.jit.load(str(tmp_path / "m.torchscript"))(images)
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
        got = torch.from_numpy(session.run(None, {"images": images.numpy().astype(np.float32)})[0])
    assert torch.allclose(got, want, atol=1e-5)


def test_a_timm_network_is_fitted_as_torchvision_s_are():
    pytest.importorskip("timm")
    model = ModelSpec("timm/resnet18").build(GREY, 10)
    assert model.eval()(torch.zeros(2, *GREY)).shape == (2, 10)
    assert model[1].net.conv1.stride == (1, 1) and isinstance(model[1].net.maxpool, nn.Identity)


def test_googlenet_s_auxiliary_outputs_are_left_out_while_training():
    model = ModelSpec("torchvision/googlenet").build((3, 32, 32), 10).train()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_a_shufflenet_keeps_small_images_resolution_without_its_first_pooling():
    net = ModelSpec("torchvision/shufflenet_v2_x0_5").build(GREY, 10)[1].net
    assert isinstance(net.maxpool, nn.Identity) and first_conv(net).stride == (1, 1)
    assert net.eval()(torch.zeros(2, *GREY)).shape == (2, 10)


def test_a_regnet_is_checked_though_it_works_out_its_widths_with_tensors():
    ModelSpec("torchvision/regnet_x_400mf").check((3, 32, 32), 10)  # no meta-device error taken for a download's


def test_a_network_whose_poolings_outgrow_the_images_says_it_needs_larger_ones():
    with pytest.raises(ArchitectureError, match="does not build for 1×8×8 images .its downsampling shrinks them"):
        ModelSpec("torchvision/squeezenet1_0").check(GREY, 10)


def bf16_weight_grads(net: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each parameter's gradient of one channels-last bfloat16 step, as training takes it on a CPU, each
    convolution's backward pass run right after freed memory was filled with huge numbers (what a buffer the
    kernel never wrote then holds)."""

    def junk(*_) -> None:
        torch.full((1 << 20,), 1e30)  # freed at once, its memory handed to the next allocations

    net = net.to(memory_format=torch.channels_last).train()
    hooks = [m.register_full_backward_pre_hook(junk) for m in net.modules() if isinstance(m, nn.Conv2d)]
    net.zero_grad()
    with torch.autocast("cpu", torch.bfloat16):
        logits = net(images.contiguous(memory_format=torch.channels_last))
    logits.float().logsumexp(1).sum().backward()
    for hook in hooks:
        hook.remove()
    return {n: p.grad for n, p in net.named_parameters()}


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (none elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}


@pytest.mark.skipif(not cpu_flags() & {"avx512_bf16", "amx_bf16"},
                    reason="the faulty kernel is oneDNN's bf16 path, taken only on CPUs with AVX-512 BF16 or AMX")
def test_the_cpu_kernel_for_a_strided_convolution_of_one_pixel_reads_unwritten_memory():
    # Why `build` sets such convolutions to stride 1: should a later PyTorch mend its kernel, this fails and
    # the workaround may go.
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(288, 288, 5, stride=2, padding=2, groups=288, bias=False)
    grads = [bf16_weight_grads(conv, torch.randn(32, 288, 1, 1))["weight"] for _ in range(10)]
    off_centre = [g.clone().index_put_((torch.arange(288), torch.tensor(0), torch.tensor(2), torch.tensor(2)),
                                       torch.tensor(0.0)) for g in grads]
    assert any(g.abs().max() > 1e20 or not torch.isfinite(g).all() for g in off_centre)


def test_a_mobilenet_s_one_pixel_convolutions_run_at_stride_1_and_answer_as_at_stride_2():
    net = library_models.build("torchvision/mobilenet_v3_small", (1, 8, 8), 10).eval()
    unstrided = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d) and n.endswith("9.block.1.0")]
    assert [net.get_submodule(n).stride for n in unstrided] == [(1, 1)]
    images = torch.randn(4, 1, 8, 8)
    before = net(images)
    for n in unstrided:
        net.get_submodule(n).stride = (2, 2)
    assert torch.equal(net(images), before)


def test_a_mobilenet_at_8x8_gets_finite_gradients_in_bfloat16_channels_last():
    torch.manual_seed(0)
    net = library_models.build("torchvision/mobilenet_v3_small", (1, 8, 8), 10)
    for _ in range(10):
        grads = bf16_weight_grads(net, torch.randn(32, 1, 8, 8))
        assert all(g.abs().max() < 1e6 for g in grads.values()), max(grads, key=lambda n: grads[n].abs().max())
