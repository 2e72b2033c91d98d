import pytest
import torch

from deepmimic.core.architectures import ArchitectureError, ModelSpec, build_model, count_parameters, parse

from ..conftest import imported_by_fresh_python


def conv(cin: int, cout: int) -> int:
    return cin * cout * 9 + cout


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


# The paper's architectures with their parameter counts worked out by hand for
# the default widths (conv 32, ×2 after each pooling; fc 128).
PAPER = [
    # Table 1, MNIST 1×28×28
    ("c-mp-c-mp-fc2", (1, 28, 28), 10, conv(1, 32) + conv(32, 64) + fc(64 * 7 * 7, 128) + fc(128, 10)),
    ("c-mp-fc2", (1, 28, 28), 10, conv(1, 32) + fc(32 * 14 * 14, 128) + fc(128, 10)),
    # Table 2, CIFAR-10 3×32×32
    ("c2-mp-c2-mp-c2-mp-fc2", (3, 32, 32), 10,
     conv(3, 32) + conv(32, 32) + conv(32, 64) + conv(64, 64) + conv(64, 128) + conv(128, 128)
     + fc(128 * 4 * 4, 128) + fc(128, 10)),
    ("c2-mp-c-fc2", (3, 32, 32), 10, conv(3, 32) + conv(32, 32) + conv(32, 64) + fc(64 * 16 * 16, 128) + fc(128, 10)),
    ("c2-mp-fc2", (3, 32, 32), 10, conv(3, 32) + conv(32, 32) + fc(32 * 16 * 16, 128) + fc(128, 10)),
]


@pytest.mark.parametrize("arch,shape,classes,params", PAPER)
def test_paper_architectures_shapes_and_parameter_counts(arch, shape, classes, params):
    model = build_model(arch, shape, classes)
    out = model(torch.randint(0, 256, (3, *shape), dtype=torch.uint8))
    assert out.shape == (3, classes)
    assert count_parameters(model) == params


def test_tiny_imagenet_stack_appends_a_classifier_after_fc_bn_d():
    model = build_model("(c-bn-d)3-fc-bn-d-s", (3, 64, 64), 200, width=8, fc_width=16)
    kinds = [type(m).__name__ for m in model]
    assert kinds.count("Conv2d") == 3 and kinds.count("BatchNorm2d") == 3 and kinds.count("BatchNorm1d") == 1
    assert kinds[-1] == "Linear" and model[-1].out_features == 200
    expected = conv(3, 8) + 2 * conv(8, 8) + 3 * (2 * 8) + fc(8 * 64 * 64, 16) + 2 * 16 + fc(16, 200)
    assert count_parameters(model) == expected
    assert model.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 200)


def test_groups_and_counts_expand():
    kinds = [layer.kind for layer in parse("(c-bn-d)2-c2-mp-fc-s")]
    assert kinds == ["c", "bn", "d", "c", "bn", "d", "c", "c", "mp", "fc"]


@pytest.mark.parametrize("arch,fragment", [
    ("c-xx-fc", "unknown token 'xx' at token 2"),
    ("c-mp-", "unknown token '(empty)' at token 3"),
    ("(c-bn", "'(' without ')'"),
    ("c-fc-mp", "'mp' (token 3) after the network was flattened"),
    ("c-s-fc", "softmax 's' (token 2) may only end the network"),
    ("c0-fc", "repeat count 0"),
    ("", "architecture is empty"),
])
def test_bad_strings_name_the_bad_token(arch, fragment):
    with pytest.raises(ArchitectureError, match=None) as err:
        ModelSpec(arch).check((1, 28, 28), 10)
    assert fragment in str(err.value)


def test_pooling_past_the_input_is_reported():
    with pytest.raises(ArchitectureError, match=r"'mp' \(token 4\) on a 1×1 feature map"):
        ModelSpec("mp-mp-mp-mp-fc").check((1, 8, 8), 10)


def test_model_normalises_uint8_input_with_its_stored_statistics():
    model = build_model("fc", (1, 2, 2), 2, mean=[0.5], std=[0.5])
    x = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(model[0](x), torch.ones(1, 1, 2, 2))


def test_stored_statistics_are_the_float32_products_pytorch_computes():
    mean, std = [0.123456789, 0.7777777], [0.3333333, 0.0123457]
    model = build_model("fc", (2, 2, 2), 2, mean=mean, std=std)
    assert torch.equal(model[0].mean, torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)
    assert torch.equal(model[0].std, torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)


def test_checking_an_architecture_does_not_import_torch_dynamo():
    """A config's check builds on the meta device; an op there imported torch._dynamo: 1.3-1.8 s in every
    process that checks a config (the CLI's, before anything runs)."""
    code = "from deepmimic.core.architectures import ModelSpec; ModelSpec('c-mp-c-mp-fc2').check((1, 8, 8), 10)"
    assert imported_by_fresh_python(code, "torch._dynamo") == []


def residual(cin: int, cout: int) -> int:
    """Two bias-free 3×3 convolutions with batch norm, plus a 1×1 projection where the width changes."""
    body = cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout
    return body + (cin * cout + 2 * cout if cin != cout else 0)


def test_residual_blocks_count_and_shape():
    model = ModelSpec("c-bn-r-mp-r-gap-fc", width=16).build((3, 32, 32), 10)
    expected = conv(3, 16) + 2 * 16 + residual(16, 16) + residual(16, 32) + fc(32, 10)
    assert count_parameters(model) == expected
    assert model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 10)


def test_resnet18_like_mentor_builds_for_cifar10():
    spec = ModelSpec("c-bn-r2-mp-r2-mp-r2-mp-r2-gap-fc", width=64)
    model = spec.build((3, 32, 32), 10)
    blocks = (2 * residual(64, 64) + residual(64, 128) + residual(128, 128) + residual(128, 256)
              + residual(256, 256) + residual(256, 512) + residual(512, 512))
    assert count_parameters(model) == conv(3, 64) + 2 * 64 + blocks + fc(512, 10)  # ~11.2M, ResNet-18's size
    assert model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 10)
