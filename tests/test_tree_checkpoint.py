"""Tree checkpoints name architectures from an allow-list: no code runs from a file (issue 11).

A hostile ``tree.pt`` (its dense architecture ``os:system`` or ``builtins:eval`` with arguments
that would write a marker file) is refused in one line before anything is imported, by
``load_tree``, ``run --weights`` and ``finetune --weights``; old checkpoints that named the zoo's
own classes load exactly; the built-model cache holds plain data and treats anything else as a
miss.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from sigmab_trees import huge_tree_checkpoint

from edgesim.cli import main
from edgesim.errors import ModelError
from edgesim.testing import stderr_lines
from edgesim.zoo.data import synthetic_images
from edgesim.zoo.resnet import BasicBlock, Bottleneck, ResNet
from edgesim.zoo.sigmab import SigmaBranchFamily, load_tree, save_tree, to_tree
from edgesim.zoo.sigmab.adapters import check_dense


@pytest.fixture(scope="module")
def tree_and_inputs():
    torch.manual_seed(0)
    dense = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=5, stem="cifar", width=4).eval()
    x, _ = synthetic_images(12, shape=(3, 16, 16), clusters=4, seed=0)
    return to_tree(dense, x[:8], levels={"layer3": 1, "layer4": 2}), x


def _hostile(path: Path, marker: Path, variant: str) -> Path:
    """A format-1 checkpoint whose dense 'class' would write ``marker`` if it were called."""
    dense = {
        "os": {"class": "os:system", "kwargs": {"command": f"touch {marker}"}},
        "eval": {"class": "builtins:eval",
                 "kwargs": {"source": f"__import__('pathlib').Path({str(marker)!r}).touch()"}},
        "block": {"class": "edgesim.zoo.resnet:ResNet",
                  "kwargs": {"block": "os:system", "layers": [1], "num_classes": 2,
                             "stem": "cifar", "width": 4}},
        "arch": {"arch": "subprocess:run", "kwargs": {"args": ["touch", str(marker)]}},
    }[variant]
    config = {"format": "edgesim.sigmab.tree/1", "arch": "resnet", "depth": 1,
              "backbone": ["stem"], "tree": ["layer1"], "dense": dense,
              "nodes": {"root": {"stages": {}, "router": None}}}
    torch.save({"format": "edgesim.sigmab.tree/1", "config": config, "state_dict": {}}, path)
    return path


@pytest.mark.parametrize("variant", ["os", "eval", "block", "arch"])
def test_a_hostile_tree_checkpoint_is_refused_before_anything_runs(tmp_path, variant):
    marker = tmp_path / "marker"
    ckpt = _hostile(tmp_path / "tree.pt", marker, variant)
    with pytest.raises(ModelError, match=r"tree\.pt: dense .* is not allowed") as err:
        load_tree(ckpt)
    assert "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("variant", ["os", "eval"])
def test_run_and_finetune_refuse_a_hostile_tree_in_one_line(tmp_path, capsys, variant):
    marker = tmp_path / "marker"
    ckpt = _hostile(tmp_path / "tree.pt", marker, variant)
    assert main(["run", "npu_small", "--model", "sigmab_r50", "--weights", str(ckpt)]) == 2
    err = stderr_lines(capsys.readouterr().err)
    assert len(err) == 1
    assert "tree.pt" in err[0]
    assert "not allowed" in err[0]
    assert main(["finetune", "sigmab_r50", "--weights", str(ckpt),
                 "--checkpoint", str(tmp_path / "out.pt")]) == 2
    err = stderr_lines(capsys.readouterr().err)
    assert len(err) == 1
    assert "tree.pt" in err[0]
    assert not marker.exists()
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize(("key", "value"), [
    ("width", 0), ("width", 2.5), ("width", True), ("layers", []), ("layers", [1, "x"]),
    ("stem", "os:system"), ("num_classes", 10 ** 9), ("block", "Bottleneck"),
])
def test_resnet_parameters_outside_their_range_are_named(key, value):
    kwargs = {"block": "bottleneck", "layers": [1, 1], "num_classes": 3, "stem": "cifar",
              "width": 4, key: value}
    with pytest.raises(ModelError, match=rf"f\.pt: dense resnet parameter {key}="):
        check_dense({"arch": "resnet", "kwargs": kwargs}, "f.pt")


def test_unknown_or_missing_parameters_are_refused():
    base = {"num_classes": 3, "in_points": 64, "width": 0.5}
    with pytest.raises(ModelError, match=r"unknown \['command'\]"):
        check_dense({"arch": "pointnet2", "kwargs": {**base, "command": "id"}}, "f.pt")
    with pytest.raises(ModelError, match=r"missing \['width'\]"):
        check_dense({"arch": "pointnet2", "kwargs": {"num_classes": 3, "in_points": 64}}, "f.pt")


def test_a_checkpoint_of_the_old_format_maps_exactly_onto_the_allow_list(tree_and_inputs,
                                                                          tmp_path):
    tree, x = tree_and_inputs
    config = copy.deepcopy(tree.config)
    kw = dict(config["dense"]["kwargs"])
    kw["block"] = "models.resnet:Bottleneck"
    config["dense"] = {"class": "models.resnet:ResNet", "kwargs": kw}
    config["format"] = "edgesim.sigmab.tree/1"
    torch.save({"format": "edgesim.sigmab.tree/1", "config": config,
                "state_dict": tree.state_dict()}, tmp_path / "old.pt")
    back = load_tree(tmp_path / "old.pt")
    with torch.no_grad():
        assert torch.equal(back(x), tree(x))
    assert back.config["dense"] == tree.config["dense"]
    assert back.config["format"] == "edgesim.sigmab.tree/2"


def test_a_tree_of_a_class_outside_the_zoo_is_not_saved(tmp_path):
    class MyResNet(ResNet):
        pass
    torch.manual_seed(0)
    dense = MyResNet(BasicBlock, [1, 1], num_classes=3, stem="cifar", width=4).eval()
    x, _ = synthetic_images(6, shape=(3, 8, 8), clusters=2, seed=0)
    tree = to_tree(dense, x, levels={"layer2": 1, "head": 1})
    with pytest.raises(ModelError, match="cannot save"):
        save_tree(tree, tmp_path / "t.pt")
    assert not (tmp_path / "t.pt").exists()
    assert SigmaBranchFamily().save_built(tree, tmp_path / "t.pt") is False


class _Plant:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_the_built_model_cache_is_plain_data_and_anything_else_is_a_miss(tree_and_inputs,
                                                                         tmp_path):
    tree, x = tree_and_inputs
    family = SigmaBranchFamily()
    entry = tmp_path / "entry.pt"
    assert family.save_built(tree, entry)
    back = family.load_built(entry)
    with torch.no_grad():
        assert torch.equal(back.route(x), tree.route(x))
    marker = tmp_path / "marker"
    planted = tmp_path / "planted.pt"
    torch.save(_Plant(marker), planted)          # a pickle that runs code when unpickled
    assert family.load_built(planted) is None
    (tmp_path / "junk.pt").write_bytes(pickle.dumps([1, 2]) + b"junk")
    assert family.load_built(tmp_path / "junk.pt") is None
    assert not marker.exists()


def test_a_checkpoint_written_before_router_centring_loads_uncentred(tree_and_inputs, tmp_path):
    # format-2 files of before: routers without "centered" and without a center parameter,
    # nodes without recorded channel numbers, no cuts
    tree, x = tree_and_inputs
    config = copy.deepcopy(tree.config)
    config.pop("cuts")
    for node in config["nodes"].values():
        if node["router"] is not None:
            node["router"].pop("centered")
        for scfg in node["stages"].values():
            scfg.pop("channels")
    state = {k: v for k, v in tree.state_dict().items() if not k.endswith("router.center")}
    torch.save({"format": "edgesim.sigmab.tree/2", "config": config, "state_dict": state},
               tmp_path / "before.pt")
    back = load_tree(tmp_path / "before.pt")
    assert all(n.router.center is None for n in back.nodes.values() if n.router is not None)
    assert {r["coverage"] for r in back.node_report()} == {None}
    with torch.no_grad():
        assert back.route(x).shape == (x.shape[0],)


# ---------------------------------------------------------------------------------------------
# the parameter count, from the config alone


@pytest.mark.parametrize("kw", [
    {"block": "bottleneck", "layers": [3, 4, 6, 3], "num_classes": 1000, "stem": "imagenet",
     "width": 64},
    {"block": "basic", "layers": [2, 1, 3], "num_classes": 7, "stem": "cifar", "width": 5},
    {"block": "bottleneck", "layers": [1], "num_classes": 1, "stem": "cifar", "width": 1},
    {"block": "basic", "layers": [1, 1, 1, 1, 1, 1, 1, 1], "num_classes": 3, "stem": "imagenet",
     "width": 2},
])
def test_the_dense_count_is_the_built_models(kw):
    # the arithmetic count equals the parameters of the model built on the meta device
    from edgesim.zoo.sigmab.adapters import ARCHS, n_params
    from edgesim.zoo.sigmab.checkpoint import tree_params
    with torch.device("meta"):
        built = n_params(ARCHS["resnet"].build_dense(kw))
    cfg = {"arch": "resnet", "dense": {"arch": "resnet", "kwargs": kw}, "nodes": {}}
    assert tree_params(cfg) == (built, built)


@pytest.mark.parametrize("width", [0.125, 0.3, 1.0])
def test_the_pointnet_count_is_the_built_models(width):
    from edgesim.zoo.sigmab.adapters import ARCHS, n_params
    from edgesim.zoo.sigmab.checkpoint import tree_params
    kw = {"num_classes": 9, "in_points": 64, "width": width}
    with torch.device("meta"):
        built = n_params(ARCHS["pointnet2"].build_dense(kw))
    cfg = {"arch": "pointnet2", "dense": {"arch": "pointnet2", "kwargs": kw}, "nodes": {}}
    assert tree_params(cfg)[0] == built


def test_the_tree_count_is_what_rebuilding_holds(tree_and_inputs, tmp_path):
    # dense model + every node's sliced stages and router: the tree's own parameters plus the
    # dense stages the nodes were cut from (the backbone is shared)
    import sigmab_trees

    from edgesim.zoo.sigmab.adapters import ARCHS, n_params
    from edgesim.zoo.sigmab.checkpoint import tree_params
    pointnet = sigmab_trees.tiny_pointnet_tree()[1]
    for tree in (tree_and_inputs[0], pointnet):
        save_tree(tree, tmp_path / "t.pt")
        loaded = load_tree(tmp_path / "t.pt")
        cfg = loaded.config
        a = ARCHS[cfg["arch"]]
        dense = a.build_dense(cfg["dense"]["kwargs"])
        stages = dict(a.stages(dense, cfg.get("cuts", [])))
        cut_from = sum(n_params(stages[s]) for s in cfg["tree"])
        assert tree_params(cfg) == (n_params(dense), n_params(loaded) + cut_from)


def test_a_huge_tree_of_allowed_values_is_refused_before_it_is_built(tmp_path, monkeypatch):
    # width 1024, 8 stages of 64 blocks, 100,000 classes: each value is allowed, the dense model
    # (2.5e13 parameters) would fill memory; refused from the numbers, nothing built
    from edgesim.zoo.sigmab import adapters
    from edgesim.zoo.sigmab.checkpoint import MAX_PARAMS

    def no_build(kwargs):
        raise AssertionError("the dense model was built")
    monkeypatch.setattr(adapters.ResNetArch, "build_dense", staticmethod(no_build))
    ckpt = huge_tree_checkpoint(tmp_path / "tree.pt")
    assert ckpt.stat().st_size < 4000
    with pytest.raises(ModelError, match=rf"tree\.pt: the tree holds [\d,]+ parameters .*at most "
                       rf"{MAX_PARAMS:,}"):
        load_tree(ckpt)


def test_nodes_wider_than_their_dense_stage_are_counted(tree_and_inputs, tmp_path):
    # keep counts of 65,536 channels in every node: in range one by one, refused together
    from edgesim.zoo.sigmab.checkpoint import tree_params
    cfg = copy.deepcopy(tree_and_inputs[0].config)
    for node in cfg["nodes"].values():
        for scfg in node["stages"].values():
            scfg["keep"] = {g: 1 << 16 for g in scfg["keep"]}
            scfg.pop("channels", None)
    assert tree_params(cfg)[1] > (1 << 28)
    ckpt = tmp_path / "wide.pt"
    torch.save({"format": "edgesim.sigmab.tree/2", "config": cfg, "state_dict": {}}, ckpt)
    with pytest.raises(ModelError, match=r"wide\.pt: the tree holds"):
        load_tree(ckpt)
