"""Classifiers from the libraries users already use, by name: `torchvision/<name>` (the classifiers of
`torchvision.models`) and `timm/<name>` (where timm is installed), adapted to the data set's images.

Adapted: the input channels (the first convolution rebuilt for them; pretrained filters summed over
RGB for grey images), the number of classes (the head, the last layer giving the library's classes,
replaced by a fresh one), and for small images (up to 64 pixels a side, `stem: auto`) a stem that keeps
their resolution, as users do for CIFAR: a ResNet's first convolution 3×3 at stride 1 and no initial
max pooling; any other network's first convolution at stride 1. `stem: small` or `standard` overrides.

A start (`weights`): a torchvision weights name (downloaded to the torch hub cache where the machine has
the internet), or a local file: a state dict or one of our checkpoints, its tensors loaded by name where
their shapes match (before adaptation, so ImageNet weights keep their filters; and after, so our own
checkpoint of the adapted network loads whole).

The libraries are imported here, when such a network is built, and nowhere else: a sweep of the paper's
notation never pays torchvision's import.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from . import artifacts

LIBRARIES = ("torchvision", "timm")
# PyTorch's words where a network's poolings and strides leave less of an image than a kernel spans
SHRUNK = ("Output size is too small", "Kernel size can't be greater than actual input size")
SMALL_SIDE = 64  # images up to this many pixels a side get the small stem under `stem: auto`


def is_library(architecture: str) -> bool:
    """Whether `architecture` names a library's network (`torchvision/resnet18`), not the paper's notation."""
    return architecture.split("/", 1)[0] in LIBRARIES and "/" in architecture


class LibraryNet(nn.Module):
    """A library's network giving logits alone (GoogLeNet and Inception give auxiliary outputs beside them
    while training)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, tuple) else out


def build(architecture: str, shape: tuple[int, int, int], num_classes: int, stem: str = "auto",
          weights: str | None = None) -> LibraryNet:
    """The library's network `architecture` for C×H×W images and `num_classes` classes, started from `weights`
    (see the module's docstring); ArchitectureError where it does not build for such images."""
    from .architectures import ArchitectureError

    library, name = architecture.split("/", 1)
    net, library_classes = (_torchvision if library == "torchvision" else _timm)(architecture, name, weights)
    state = _state(weights) if weights and _is_file(weights) else None  # read once, loaded before and after
    loaded = _load(net, state) if state is not None else set()
    small = stem == "small" or (stem == "auto" and max(shape[1:]) <= SMALL_SIDE)
    _adapt(net, shape[0], num_classes, library_classes, small, pretrained=bool(weights))
    if state is not None:
        loaded |= _load(net, state)
        if not loaded:
            raise UserError(f"weights {weights}: no tensor of it fits {architecture}")
    model = LibraryNet(net)
    try:
        seen = _conv_inputs(model, shape)
    except Exception as e:  # noqa: BLE001 (the library's own message, whatever its type: a ViT's size check, …)
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        if any(shrunk in why for shrunk in SHRUNK):
            why = f"its downsampling shrinks them below a kernel: it needs larger images; {why}"
        raise ArchitectureError(f"architecture {architecture!r}: does not build for {'×'.join(map(str, shape))} "
                                f"images ({why})") from None
    _unstride_single_pixels(seen)
    return model.train()


def _conv_inputs(model: nn.Module, shape: tuple[int, int, int]) -> list[tuple[nn.Conv2d, tuple[int, ...]]]:
    """Each convolution of `model` with the size of its input for one C×H×W image (a forward pass in eval
    mode, which also raises where the network does not fit such images)."""
    seen: list[tuple[nn.Conv2d, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda m, args, _: seen.append((m, tuple(args[0].shape[2:]))))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((1, *shape), device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _unstride_single_pixels(seen: list[tuple[nn.Conv2d, tuple[int, ...]]]) -> None:
    """Stride 1 for each convolution whose input is one pixel along a side and padded by half its kernel there:
    its output is that one pixel at any stride, so nothing it computes changes. Why: the bfloat16 channels-last
    kernel PyTorch's CPU build takes for such a convolution at stride 2 reads memory it never wrote when it
    computes the weights' gradient, so off-centre taps get whatever was there, NaN included (a MobileNet's
    `features.9` at 8×8 images; `tests/core/test_library_models.py` shows it)."""
    for conv, size in seen:
        if isinstance(conv.padding, str):
            continue
        stride = tuple(1 if n == 1 and 2 * p == d * (k - 1) else s for n, s, p, d, k in
                       zip(size, conv.stride, conv.padding, conv.dilation, conv.kernel_size))
        conv.stride = stride


def check_weights(architecture: str, weights: str) -> None:
    """A UserError unless `weights` is a readable state dict file (or checkpoint) or one of the library's weights
    names for `architecture`; downloads nothing."""
    if _is_file(weights):
        _state(weights)
        return
    if "/" in weights or os.path.splitext(weights)[1] in (".pt", ".pth", ".bin", ".safetensors"):
        raise UserError(f"weights {weights}: no such file")
    library, name = architecture.split("/", 1)
    if library == "torchvision":
        _torchvision_weights(name, weights)
    else:
        import timm

        if f"{name}.{weights}" not in timm.list_pretrained(f"{name}.*"):
            raise UserError(f"weights {weights!r}: neither a file nor one of timm's pretrained tags for {name}")


def _torchvision_weights(name: str, weights: str) -> Any:
    import torchvision.models as models

    try:
        return models.get_model_weights(name)[weights.rsplit(".", 1)[-1]]
    except KeyError:
        names = ", ".join(w.name for w in models.get_model_weights(name))
        raise UserError(f"weights {weights!r}: neither a file nor one of {name}'s weights ({names})") from None


def _torchvision(architecture: str, name: str, weights: str | None) -> tuple[nn.Module, int]:
    import torchvision.models as models

    from .architectures import ArchitectureError

    known = models.list_models(module=models)  # the classifiers, not detection or segmentation
    if name not in known:
        raise ArchitectureError(f"architecture {architecture!r}: not a torchvision classifier (e.g. resnet18, "
                                f"mobilenet_v3_small, efficientnet_b0; {len(known)} in all)")
    chosen = _torchvision_weights(name, weights) if weights and not _is_file(weights) else None
    try:
        net = models.get_model(name, weights=chosen)
    except NotImplementedError:  # RegNets work out their widths with tensors: not on the meta device of a check
        device = torch.empty(0).device
        with torch.device("cpu"):
            net = models.get_model(name, weights=chosen)
        net = net.to(device)
    except (OSError, RuntimeError) as e:  # the download, on a machine without the internet
        if chosen is None:
            raise
        raise UserError(f"weights {weights!r}: cannot be fetched ({str(e).splitlines()[0][:160]}): give a local "
                        "file of them instead") from None
    return net, len(chosen.meta["categories"]) if chosen else 1000


def _timm(architecture: str, name: str, weights: str | None) -> tuple[nn.Module, int]:
    from .architectures import ArchitectureError

    try:
        import timm
    except ImportError:
        raise ArchitectureError(f"architecture {architecture!r}: timm is not installed (pip install "
                                "'deepmimic-sweep[timm]')") from None
    if name not in timm.list_models():
        raise ArchitectureError(f"architecture {architecture!r}: not one of timm's models")
    named = bool(weights) and not _is_file(weights)
    try:  # a named start is one of timm's pretrained tags: `resnet18` + `a1_in1k`
        net = timm.create_model(f"{name}.{weights}" if named else name, pretrained=named)
    except Exception as e:  # noqa: BLE001 (a download failure, in timm's or huggingface_hub's words)
        raise UserError(f"weights {weights!r}: cannot be fetched ({str(e).splitlines()[0][:160]}): give a local "
                        "file of them instead") from None
    return net, net.num_classes


def _is_file(weights: str) -> bool:
    return os.path.exists(os.path.expanduser(weights))


def local_path(weights: str) -> str:
    """`weights` as an absolute path where it names a file here (trial processes run in other folders), else as
    given (a weights name)."""
    return os.path.abspath(os.path.expanduser(weights)) if _is_file(weights) else weights


@functools.lru_cache(maxsize=32)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    sha = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)) if os.path.isdir(path) else [("", [], [path])]:
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    sha.update(block)
    return sha.hexdigest()


def fingerprint(weights: str) -> str:
    """What a start is, for a cache key: a file's (or checkpoint folder's) SHA-256, so a file replaced at the same
    path trains anew; a weights name as it is."""
    if not _is_file(weights):
        return weights
    path = os.path.abspath(os.path.expanduser(weights))
    stat = os.stat(path)
    return "sha256:" + _digest(path, stat.st_mtime_ns, stat.st_size)


def _adapt(net: nn.Module, channels: int, num_classes: int, library_classes: int, small: bool,
           pretrained: bool) -> None:
    """The network fitted to the images' channels, the classes and (`small`) the images' size, in place."""
    conv_name, conv = next((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
    if small and conv_name == "conv1" and conv.kernel_size == (7, 7):  # a ResNet (torchvision's, timm's): CIFAR's stem
        net.conv1 = nn.Conv2d(channels, conv.out_channels, 3, stride=1, padding=1, bias=False)
    else:
        if conv.in_channels != channels:
            _replace(net, conv_name, _rechannelled(conv, channels, pretrained))
        if small:
            _first_conv(net).stride = (1, 1)
    if small and isinstance(getattr(net, "maxpool", None), nn.MaxPool2d):  # ResNets', ShuffleNets' first pooling
        net.maxpool = nn.Identity()
    head_name, head = [(n, m) for n, m in net.named_modules()
                       if (isinstance(m, nn.Linear) and m.out_features == library_classes)
                       or (isinstance(m, nn.Conv2d) and m.out_channels == library_classes)][-1]
    fresh = (nn.Linear(head.in_features, num_classes) if isinstance(head, nn.Linear)
             else nn.Conv2d(head.in_channels, num_classes, head.kernel_size, head.stride, head.padding))
    _replace(net, head_name, fresh)


def _first_conv(net: nn.Module) -> nn.Conv2d:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))


def _rechannelled(conv: nn.Conv2d, channels: int, pretrained: bool) -> nn.Conv2d:
    """`conv` taking `channels` inputs; pretrained RGB filters summed over their inputs (grey images see the
    filters' response to a grey image), else fresh."""
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None)
    if pretrained:
        with torch.no_grad():
            new.weight.copy_(conv.weight.sum(1, keepdim=True).repeat(1, channels, 1, 1) / channels)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new


def _replace(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, module)


def _load(net: nn.Module, state: dict[str, Any]) -> set[str]:
    """The tensors of a state dict whose names and shapes match `net`'s, loaded into it; their names."""
    own = net.state_dict()
    fitting = {}
    for key, tensor in state.items():
        name = _unprefixed(key)
        if name in own and isinstance(tensor, torch.Tensor) and tensor.shape == own[name].shape:
            fitting[name] = tensor
    net.load_state_dict(fitting, strict=False)
    return set(fitting)


def _state(path: str) -> dict[str, Any]:
    """The state dict in a file, or in one of our checkpoint folders (its manifest checked first)."""
    path = os.path.expanduser(path)
    if os.path.isdir(path):  # one of our checkpoints: checked against its manifest first
        try:
            artifacts.verify(path)
        except artifacts.TornArtifact as e:
            raise UserError(f"weights {path}: {e}") from None
        path = os.path.join(path, "model.pt")
    try:
        if path.endswith(".safetensors"):  # as timm's and Hugging Face's weights come
            from safetensors.torch import load_file

            state: Any = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (pickle's, zip's, safetensors' and torch's errors: the user's file)
        raise UserError(f"weights {path}: not a PyTorch state dict ({str(e).splitlines()[0][:160]})") from None
    state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise UserError(f"weights {path}: not a state dict (a mapping of tensor names to tensors)")
    return state


def _unprefixed(key: str) -> str:
    """A tensor's name as the bare network has it: without DDP's `module.`, nor our wrapper's `1.net.`."""
    for prefix in ("module.", "1.net.", "net."):
        key = key.removeprefix(prefix)
    return key
