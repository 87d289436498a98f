"""A user's checkpoint and the transform families (sparse, nested, signed-binary).

A dense checkpoint is loaded into the dense model first and then transformed (pruned, nested,
binarised), calibrated on ``--data`` when given; a checkpoint of the transformed model loads as
itself; anything else is a one-line ``ModelError`` naming the file and the key. Each family is
called as ``edgesim.build`` calls it (``Family.build(spec, weights, seed, data)``) on small
CIFAR-style ResNets built by the factories below (importable as ``test_transforms_load:...``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgesim.errors import ModelError
from edgesim.zoo.nested import NestedFamily, NestedModel, nested_levels
from edgesim.zoo.pruning import (
    MASK_BUFFER,
    SparseFamily,
    he_classifier_,
    prunable_weights,
    pruned_model,
)
from edgesim.zoo.registry import ModelSpec
from edgesim.zoo.resnet import BasicBlock, ResNet
from edgesim.zoo.sensitivity import data_batches
from edgesim.zoo.signed_binary import (
    SignedBinaryFamily,
    calibrate_thresholds,
    signed_binarize,
    to_signed_binary,
)

SHAPE = (3, 16, 16)
CLASSES = 10
DENSITIES = (0.1, 0.3, 0.5)


def small_dense(*, num_classes: int = CLASSES, **_: object) -> nn.Module:
    """CIFAR-stem ResNet, width 32: layer2's 3x3 convs hold 36,864 weights (no small-layer cap)."""
    return ResNet(BasicBlock, [1, 1], num_classes=num_classes, stem="cifar", width=32)


def small_sparse(seed: int = 0, *, num_classes: int = CLASSES, strategy: str = "param_proportional",
                 sensitivity: str = "magnitude", calib=None, base=None) -> nn.Module:
    torch.manual_seed(seed)
    model = base if base is not None else he_classifier_(small_dense(num_classes=num_classes))
    return pruned_model(model, calib, shape=SHAPE, num_classes=num_classes, seed=seed,
                        strategy=strategy, sensitivity=sensitivity, steps=None,
                        targets=(0.7, 0.8, 0.9))


def small_nested(seed: int = 0, *, num_classes: int = CLASSES, base=None) -> NestedModel:
    torch.manual_seed(seed)
    net = base if base is not None else small_dense(num_classes=num_classes)
    return NestedModel(net, nested_levels(net, DENSITIES))


def small_sb(seed: int = 0, *, num_classes: int = CLASSES, base=None, calib=None) -> nn.Module:
    torch.manual_seed(seed)
    net = base if base is not None else small_dense(num_classes=num_classes)
    net = to_signed_binary(net, keep_first_last_int8=(True, False))
    return calibrate_thresholds(net, calib, lr=0.05) if calib is not None else net


for _f in (small_sparse, small_nested, small_sb):
    _f.edgesim_dense = small_dense  # type: ignore[attr-defined]

SPECS = {
    "sparse": ModelSpec("t_sparse", "sparse", "test_transforms_load:small_sparse",
                        {"num_classes": CLASSES}, SHAPE),
    "nested": ModelSpec("t_nested", "nested", "test_transforms_load:small_nested",
                        {"num_classes": CLASSES}, SHAPE,
                        encodings=("dense", "nested", "bitmap", "csr", "csc", "rle")),
    "signed_binary": ModelSpec("t_sb", "signed_binary", "test_transforms_load:small_sb",
                               {"num_classes": CLASSES}, SHAPE),
}
FAMILY = {"sparse": SparseFamily(), "nested": NestedFamily(),
          "signed_binary": SignedBinaryFamily()}


@pytest.fixture(scope="module")
def dense_ckpt(tmp_path_factory):
    """A dense checkpoint of other weights than any seeded build (seed 123), with BN stats."""
    torch.manual_seed(123)
    net = small_dense()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ckpt") / "dense.pt"
    torch.save(net.state_dict(), path)
    return str(path), net.state_dict()


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """24 unlabelled inputs (a .pt tensor, as ``--data`` takes)."""
    path = tmp_path_factory.mktemp("data") / "inputs.pt"
    torch.save(torch.randn(24, *SHAPE, generator=torch.Generator().manual_seed(5)), path)
    return str(path)


def _build(family: str, weights: str | None, data: str | None = None):
    torch.set_num_threads(1)
    return FAMILY[family].build(SPECS[family], weights, 0, data)


# -- Mix-and-Match --------------------------------------------------------------------------------

def test_pruning_after_loading_keeps_the_loaded_values(dense_ckpt) -> None:
    path, loaded = dense_ckpt
    model = _build("sparse", path)
    weights = prunable_weights(model)
    zeros = total = 0
    for name, w in weights.items():
        kept = w.detach() != 0
        # every weight left is the loaded one; the pruned ones are 0 and the mask says which
        assert torch.equal(w.detach()[kept], loaded[name][kept]), name
        assert torch.equal(getattr(model.get_submodule(name.rpartition(".")[0]), MASK_BUFFER),
                           kept), name
        zeros += int((~kept).sum())
        total += kept.numel()
    assert zeros / total > 0.5                 # pruned: not the 1.2 % of the loaded zeros
    state = model.state_dict()
    for key in ("bn1.running_var", "layer2.0.bn2.weight", "fc.bias"):
        assert torch.equal(state[key], loaded[key])   # what pruning leaves is the checkpoint's
    # the report is that of the loaded weights, not of the seeded random init
    assert model.prune_report.rows() != _build("sparse", None).prune_report.rows()


def test_pruned_checkpoint_loads_as_itself(dense_ckpt, tmp_path) -> None:
    model = _build("sparse", dense_ckpt[0])
    path = tmp_path / "pruned.pt"
    torch.save(model.state_dict(), path)
    again = _build("sparse", str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    assert again.prune_report.rows() == model.prune_report.rows()   # ranges, rules, sparsity


def test_pruning_calibrates_on_the_data(dense_ckpt, data_file) -> None:
    path, loaded = dense_ckpt
    dense = small_dense()
    dense.load_state_dict(loaded)
    batches = data_batches(data_file, shape=SHAPE, model=dense)
    # unlabelled inputs are labelled by the loaded model's own decision, 8 per batch
    assert [len(x) for x, _ in batches] == [8, 8, 8]
    with torch.no_grad():
        assert torch.equal(torch.cat([y for _, y in batches]),
                           dense.eval()(torch.cat([x for x, _ in batches])).argmax(dim=1))
    on_data = _build("sparse", path, data_file)
    synthetic = _build("sparse", path)
    # the SNIP and GraSP baselines read the calibration batches: the ranges move with them
    ranges = [(r["rho_min"], r["rho_max"]) for r in on_data.prune_report.rows()]
    assert ranges != [(r["rho_min"], r["rho_max"]) for r in synthetic.prune_report.rows()]
    for name, w in prunable_weights(on_data).items():
        kept = w.detach() != 0
        assert torch.equal(w.detach()[kept], loaded[name][kept]), name


# -- nested ---------------------------------------------------------------------------------------

def test_nesting_after_loading_ranks_the_loaded_weights(dense_ckpt, tmp_path) -> None:
    path, loaded = dense_ckpt
    model = _build("nested", path)
    dense = small_dense()
    dense.load_state_dict(loaded)
    expected = nested_levels(dense, DENSITIES)   # levels by the loaded weights' magnitude
    for name, pm in model.masks().items():
        wname = name.removeprefix("net.").replace(".parametrizations.weight.original", ".weight")
        assert torch.equal(pm.levels, expected[wname]), name
        latent = model.latent_weights()[name].detach()
        present = pm.levels >= 1
        assert torch.equal(latent[present], loaded[wname][present]), name
        assert not latent[~present].any()
    # the nested model's own checkpoint (latent weights + levels) loads as itself
    ckpt = tmp_path / "nested.pt"
    torch.save(model.state_dict(), ckpt)
    again = _build("nested", str(ckpt))
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    again.set_level(1)
    model.set_level(1)
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), model.eval()(x))


# -- signed-binary --------------------------------------------------------------------------------

def test_binarising_after_loading_uses_the_loaded_weights(dense_ckpt, data_file, tmp_path) -> None:
    path, loaded = dense_ckpt
    model = _build("signed_binary", path)
    binarised = {n: m for n, m in model.named_modules() if hasattr(m, "parametrizations")}
    assert len(binarised) == 6     # all but the int8 stem: 4 convs, the shortcut, the classifier
    for name, m in binarised.items():
        latent = m.parametrizations.weight.original.detach()
        assert torch.equal(latent, loaded[f"{name}.weight"]), name
        assert torch.equal(m.weight.detach(), signed_binarize(latent)[0]), name
    assert torch.equal(model.conv1.weight.detach(), loaded["conv1.weight"])
    # its own checkpoint (latent weights, thresholds) loads as itself
    ckpt = tmp_path / "sb.pt"
    torch.save(model.state_dict(), ckpt)
    again = _build("signed_binary", str(ckpt))
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    # with --data the thresholds are learned on it; the latent weights stay the loaded ones
    on_data = _build("signed_binary", path, data_file)
    t = {n: m.parametrizations.weight[0].threshold.item() for n, m in on_data.named_modules()
         if hasattr(m, "parametrizations")}
    assert any(v != pytest.approx(0.7) for v in t.values())
    assert torch.equal(on_data.layer2[0].conv1.parametrizations.weight.original.detach(),
                       loaded["layer2.0.conv1.weight"])


# -- foreign checkpoints --------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(SPECS))
def test_a_foreign_checkpoint_is_one_line_naming_file_and_key(family, dense_ckpt,
                                                               tmp_path) -> None:
    from usermodels import tiny_net

    foreign = tmp_path / "foreign.pt"
    torch.save(tiny_net().state_dict(), foreign)
    with pytest.raises(ModelError, match=r"foreign\.pt") as info:
        _build(family, str(foreign))
    msg = str(info.value)
    assert "\n" not in msg
    assert "key '" in msg
    # a dense checkpoint with one tensor of the wrong shape names that key
    bad = dict(dense_ckpt[1])
    bad["layer2.0.conv2.weight"] = torch.zeros(64, 64, 1, 1)
    wrong = tmp_path / "wrong.pt"
    torch.save(bad, wrong)
    with pytest.raises(ModelError, match=r"wrong\.pt.*dense model t_.*'layer2\.0\.conv2\.weight'"
                                         r" has shape \(64, 64, 1, 1\)") as info:
        _build(family, str(wrong))
    assert "\n" not in str(info.value)
