"""Sigma-Branch trees: k-means, routing consistency, soft training, accounting, checkpoints."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from sigmab_trees import LEVELS, check_hard_routing, n_params, tiny_pointnet_tree
from torch import nn

from edgesim.errors import ModelError
from edgesim.zoo.data import synthetic_images
from edgesim.zoo.pointnet2 import pointnet2_ssg
from edgesim.zoo.resnet import BasicBlock, Bottleneck, ResNet, resnet50, resnet50_cifar
from edgesim.zoo.sigmab import (
    DEFAULT_LEVELS,
    Router,
    SigmaTree,
    fine_tune,
    load_tree,
    save_tree,
    sigmab_pointnet2,
    sigmab_resnet50,
    sigmab_resnet50_cifar,
    spherical_kmeans,
    to_tree,
)


@pytest.fixture(scope="module")
def tiny_resnet() -> tuple[nn.Module, torch.Tensor]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dense = ResNet(Bottleneck, [1, 1, 2, 1], num_classes=6, stem="cifar", width=4).eval()
    x, _ = synthetic_images(24, shape=(3, 16, 16), clusters=8, seed=0)
    return dense, x


@pytest.fixture(scope="module")
def resnet_tree(tiny_resnet: tuple[nn.Module, torch.Tensor]) -> SigmaTree:
    dense, x = tiny_resnet
    return to_tree(dense, x[:16], levels=LEVELS)


@pytest.fixture(scope="module")
def pointnet_tree() -> tuple[nn.Module, SigmaTree, torch.Tensor]:
    return tiny_pointnet_tree()


# -- spherical k-means ---------------------------------------------------------------------


def test_spherical_kmeans_recovers_planted_clusters() -> None:
    # two tight caps around orthogonal directions on the unit sphere in R^8, with different norms
    # (norms must not matter for cosine clustering)
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(8)[:2]
    truth = torch.arange(40) % 2
    x = centres[truth] + 0.05 * torch.randn(40, 8, generator=gen)
    x = x * (1 + 4 * torch.rand(40, 1, generator=gen))
    labels, cent = spherical_kmeans(x, k=2, seed=3)
    agree = float((labels == truth).float().mean())
    assert max(agree, 1 - agree) == 1.0  # perfect up to label swap
    assert torch.allclose(cent.norm(dim=1), torch.ones(2))
    # each centroid points at its planted direction: cosine close to 1
    assert float((cent @ centres.T).abs().max(dim=1).values.min()) > 0.99


def test_spherical_kmeans_is_deterministic_and_labels_are_nearest_centroids() -> None:
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(1))
    l1, c1 = spherical_kmeans(x, k=3, seed=7)
    l2, c2 = spherical_kmeans(x, k=3, seed=7)
    assert torch.equal(l1, l2)
    assert torch.equal(c1, c2)
    nearest = (nn.functional.normalize(x, dim=1) @ c1.T).argmax(1)
    assert torch.equal(l1, nearest)
    assert set(l1.tolist()) == {0, 1, 2}  # no empty cluster


def test_spherical_kmeans_rejects_bad_k() -> None:
    with pytest.raises(ValueError, match="k"):
        spherical_kmeans(torch.randn(2, 3), k=3)


def test_router_argmax_is_nearest_centroid_by_cosine() -> None:
    router = Router(3, scale=5.0)
    with torch.no_grad():
        router.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    # (B, C, H, W) inputs are average-pooled: means (2, 1, 0) -> L, (0.5, 3, 0) -> R
    x = torch.tensor([[2.0, 1, 0], [0.5, 3, 0]])[:, :, None, None].expand(2, 3, 2, 2)
    assert router(x).argmax(1).tolist() == [0, 1]
    assert Router.edgesim_kind == "router"


# -- structure and routing -----------------------------------------------------------------


def test_resnet_tree_structure(resnet_tree: SigmaTree) -> None:
    # stem..layer3 block 0 backbone; layer3 block 1 in the level-1 nodes; layer4 + head in the
    # 4 leaves at depth 2
    assert resnet_tree.backbone_names == ["stem", "layer1", "layer2", "layer3"]
    assert resnet_tree.num_paths == 4
    assert resnet_tree.path_names() == ["L-L", "L-R", "R-L", "R-R"]
    assert resnet_tree.path_nodes(2) == ["root", "R", "RL"]
    assert resnet_tree.nodes["L"].stage_names == ["layer3_1"]
    assert resnet_tree.nodes["RL"].stage_names == ["layer4", "head"]
    pc = resnet_tree.param_counts()
    assert pc["nodes"]["root"] == 0
    assert pc["nodes"]["L"] > 0  # internal nodes hold layers
    routers = [m for m in resnet_tree.modules() if isinstance(m, Router)]
    assert len(routers) == 3  # 2**2 - 1 internal nodes
    # the root router reads layer3 block 0's output, 4 * 2**2 * 4 = 64 channels (width 4,
    # expansion 4); block 1 keeps the residual width, so the level-1 routers read 64 too
    assert {r.weight.shape for r in routers} == {torch.Size([2, 64])}


def test_hard_forward_equals_forward_path_of_each_inputs_own_path(
        resnet_tree: SigmaTree, tiny_resnet: tuple[nn.Module, torch.Tensor]) -> None:
    paths = check_hard_routing(resnet_tree, tiny_resnet[1])
    assert len(paths.unique()) >= 3  # clustered inputs spread over several leaves


def test_route_matches_the_argmax_of_each_nodes_router_on_its_own_output(
        resnet_tree: SigmaTree, tiny_resnet) -> None:
    x = tiny_resnet[1]
    with torch.no_grad():
        paths = resnet_tree.route(x)
        for b in range(x.shape[0]):
            state, key, bits = resnet_tree._backbone(x[b:b + 1]), "root", ""
            for _ in range(resnet_tree.depth):
                state = resnet_tree._run_node(key, state)
                bits += "LR"[int(resnet_tree.nodes[key].router(state).argmax())]
                key = bits
            assert resnet_tree.path_names()[int(paths[b])] == "-".join(bits)


def test_forward_path_runs_the_routers_on_the_path_as_modules(resnet_tree: SigmaTree,
                                                              tiny_resnet) -> None:
    seen: list[str] = []
    names = {m: n for n, m in resnet_tree.named_modules()}
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(names[m]))
             for m in resnet_tree.modules() if isinstance(m, Router)]
    with torch.no_grad():
        resnet_tree.forward_path(tiny_resnet[1][:2], 3)  # R-R
    for h in hooks:
        h.remove()
    assert seen == ["nodes.root.router", "nodes.R.router"]


def test_soft_forward_is_the_probability_weighted_mix_of_leaves(resnet_tree: SigmaTree,
                                                                tiny_resnet) -> None:
    x = tiny_resnet[1][:4]
    tree = resnet_tree
    with torch.no_grad():
        mix = torch.zeros(4, 6)
        for i in range(tree.num_paths):
            state, p = tree._backbone(x), torch.ones(4)
            for key, bit in zip(tree.path_nodes(i), tree.path_names()[i].split("-"),
                                strict=False):
                state = tree._run_node(key, state)
                probs = torch.softmax(tree.nodes[key].router(state), 1)
                p = p * probs[:, "LR".index(bit)]
            mix += p[:, None] * tree.forward_path(x, i)
        assert torch.allclose(tree.soft_forward(x), mix, atol=1e-5)
        assert torch.allclose(tree._soft(x).leaves.sum(1), torch.ones(4))


def test_pointnet_tree_default_levels_and_routing(pointnet_tree) -> None:
    _, tree, x = pointnet_tree
    # backbone sa1 + sa2; sa3 in the two level-1 nodes; head in the four leaves
    assert tree.backbone_names == ["sa1", "sa2"]
    assert tree.num_paths == 4
    assert tree.nodes["L"].stage_names == ["sa3"]
    assert tree.nodes["LR"].stage_names == ["head"]
    check_hard_routing(tree, x)
    # the level-1 routers read their own sa3 copy's kept channels
    assert tree.nodes["L"].router.weight.shape[1] == tree.nodes["L"].sa3.mlp[6].out_channels


# -- channel allocation and accounting -----------------------------------------------------


def test_param_count_identities(resnet_tree: SigmaTree) -> None:
    pc = resnet_tree.param_counts()
    assert pc["total"] == n_params(resnet_tree)
    assert pc["total"] == pc["backbone"] + pc["routers"] + sum(pc["nodes"].values())
    for i in range(resnet_tree.num_paths):
        nodes = resnet_tree.path_nodes(i)
        routers = sum(n_params(resnet_tree.nodes[k].router) for k in nodes[:-1])
        assert pc["paths"][i] == pc["backbone"] + routers + sum(pc["nodes"][k] for k in nodes)
    # a path holds one leaf: the rest of the tree is what it does not load
    assert max(pc["paths"]) < pc["total"]


def test_tree_holds_about_the_dense_parameters(resnet_tree: SigmaTree,
                                               tiny_resnet, pointnet_tree) -> None:
    dense = tiny_resnet[0]
    # the backbone is copied unchanged; the solved keep fractions make the 2 level-1 nodes hold
    # about the dense layer3 block 1 and the 4 leaves the dense layer4 + fc, so total = dense +
    # routers, up to channel rounding
    assert resnet_tree.param_counts()["backbone"] == (
        n_params(dense) - n_params(dense.layer3[1]) - n_params(dense.layer4) - n_params(dense.fc))
    assert resnet_tree.param_counts()["total"] == pytest.approx(n_params(dense), rel=0.1)
    pdense, ptree, _ = pointnet_tree
    assert ptree.param_counts()["total"] == pytest.approx(n_params(pdense), rel=0.1)


def test_leaves_slice_the_pretrained_weights(resnet_tree: SigmaTree, tiny_resnet) -> None:
    dense = tiny_resnet[0]
    leaf = resnet_tree.nodes["LR"]
    keep = resnet_tree.config["nodes"]["LR"]["stages"]["layer4"]["keep"]
    # layer4 block 0: conv1 reads all 64 channels of the parent's layer3 block 1 (its residual
    # width is the backbone's) and keeps keep["0.bn1"] of 32
    w = leaf.layer4[0].conv1.weight
    assert w.shape == (keep["0.bn1"], 64, 1, 1)
    rows = [(dense.layer4[0].conv1.weight == r).all(dim=(1, 2, 3)).nonzero().item() for r in w]
    assert rows == sorted(rows)  # kept rows are the dense rows, in order
    # the residual set is shared: conv3 and downsample keep the same output channels, and the fc
    # reads exactly those; class outputs stay full
    assert leaf.layer4[0].conv3.out_channels == leaf.layer4[0].downsample[0].out_channels
    assert leaf.head.fc.in_features == keep["res"]
    assert leaf.head.fc.out_features == 6


def test_kept_channels_follow_the_clusters_activation(tiny_resnet) -> None:
    dense, x = tiny_resnet
    tree = to_tree(dense, x[:16], levels=LEVELS, fractions={"layer4": 0.5})
    # with f = 1/2 the 4 leaves hold 0.5 x 4 x 128 = 256 copies of layer4's 128 output channels
    # between them, shared out by their inputs' activations
    widths = [tree.nodes[k].head.fc.in_features for k in ("LL", "LR", "RL", "RR")]
    assert sum(widths) == 256
    assert tree.config["fractions"]["layer4"] == 0.5


def test_custom_levels_put_layers_in_internal_nodes(tiny_resnet) -> None:
    dense, x = tiny_resnet
    tree = to_tree(dense, x[:16], levels={"layer3": 1, "layer4": 2, "head": 2})
    assert tree.backbone_names == ["stem", "layer1", "layer2"]
    assert tree.nodes["L"].stage_names == ["layer3"]
    assert tree.param_counts()["nodes"]["root"] == 0
    with torch.no_grad():
        paths, out = tree.route(x), tree(x)
        for i in paths.unique().tolist():
            assert torch.allclose(tree.forward_path(x[paths == i], i), out[paths == i],
                                  atol=1e-5)
    assert tree.param_counts()["total"] == pytest.approx(n_params(dense), rel=0.1)


def test_bad_levels_name_the_problem(tiny_resnet) -> None:
    dense, x = tiny_resnet
    with pytest.raises(ModelError, match="unknown stages"):
        to_tree(dense, x[:4], levels={"layer9": 1})
    with pytest.raises(ModelError, match="non-decreasing"):
        to_tree(dense, x[:4], levels={"layer3": 2, "layer4": 1, "head": 2})
    with pytest.raises(ModelError, match="prefix"):
        to_tree(dense, x[:4], levels={"stem": 1})
    with pytest.raises(ModelError, match=r"unknown stages \['layer3_5'\]"):
        to_tree(dense, x[:4], levels={"layer3_5": 1})
    with pytest.raises(ModelError, match="at least 2"):
        to_tree(dense, x[:1], levels=LEVELS)
    with pytest.raises(ModelError, match="architecture"):
        to_tree(nn.Linear(3, 3), x[:4])


# -- training and checkpoints --------------------------------------------------------------


def test_one_soft_step_reaches_routers_and_leaves(resnet_tree: SigmaTree, tiny_resnet) -> None:
    x = tiny_resnet[1]
    tree = copy.deepcopy(resnet_tree)
    y = torch.arange(8) % 6
    tree.train()
    out = tree.soft_forward(x[:8])
    nn.functional.cross_entropy(out, y).backward()
    for key in ("root", "L", "R"):
        grad = tree.nodes[key].router.weight.grad
        assert grad is not None
        assert float(grad.abs().sum()) > 0
    for key in ("LL", "RR"):
        assert float(tree.nodes[key].head.fc.weight.grad.abs().sum()) > 0
    tree.zero_grad()
    before = tree.nodes["root"].router.weight.detach().clone()
    losses = fine_tune(tree, [(x[:8], y)] * 3, lr=1e-2, steps=2)
    assert len(losses) == 2
    assert not torch.equal(before, tree.nodes["root"].router.weight)
    assert not tree.training


def test_save_load_round_trip_gives_identical_outputs(resnet_tree: SigmaTree, tiny_resnet,
                                                      pointnet_tree, tmp_path: Path) -> None:
    x = tiny_resnet[1]
    save_tree(resnet_tree, tmp_path / "tree.pt")
    back = load_tree(tmp_path / "tree.pt")
    with torch.no_grad():
        assert torch.equal(back(x), resnet_tree(x))
        assert torch.equal(back.route(x), resnet_tree.route(x))
    assert back.param_counts() == resnet_tree.param_counts()
    _, ptree, px = pointnet_tree
    save_tree(ptree, tmp_path / "pn.pt")
    with torch.no_grad():
        assert torch.equal(load_tree(tmp_path / "pn.pt")(px), ptree(px))


def test_missing_or_corrupt_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nothere\.pt"):
        load_tree(tmp_path / "nothere.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ModelError, match=r"bad\.pt"):
        load_tree(tmp_path / "bad.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match=r"other\.pt.*not a Sigma-Branch"):
        load_tree(tmp_path / "other.pt")


# -- full size -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("factory", "dense_factory", "levels"), [
    (sigmab_resnet50, resnet50, "resnet"),
    (sigmab_resnet50_cifar, resnet50_cifar, "resnet_cifar"),
])
def test_full_resnet50_active_params_are_40_to_42_percent_of_dense(factory, dense_factory,
                                                                    levels) -> None:
    # Derivation of the target (REFERENCE.md A1, a stage at depth d shared by its 2**d nodes):
    # ImageNet: backbone stem..layer3 block 1 = 4,074,560; layer3 blocks 2-5 = 4,468,736 over 2
    # nodes; layer4 + fc = 17,013,736 over 4 leaves: (4,074,560 + 2,234,368 + 4,253,434) /
    # 25,557,032 = 0.413. CIFAR-100 (23,705,252; 3x3 stem, fc 204,900): backbone to layer3
    # block 0 = 2,949,696; blocks 1-5 = 5,585,920 / 2; (layer4 + fc) / 4 = 3,792,409: 0.402.
    tree = factory(calibration=8)
    assert tree.config["levels"]["layer4"] == DEFAULT_LEVELS[levels]["layer4"] == 2
    dense = n_params(dense_factory())
    pc = tree.param_counts()
    mean_active = sum(pc["paths"]) / len(pc["paths"])
    assert 0.40 <= mean_active / dense <= 0.42
    assert abs(pc["total"] / dense - 1) < 0.10
    assert {r["coverage"] for r in tree.node_report()} == {1.0}


@pytest.mark.slow
def test_full_pointnet2_active_params_are_40_to_42_percent_of_dense() -> None:
    # Derivation: backbone sa1 + sa2 = 79,936 params; sa3 (725,248) over 2 level-1 nodes and the
    # head (667,176) over 4 leaves: (79,936 + 362,624 + 166,794 + routers ~1.9 k) / 1,472,360
    # ~ 0.415.
    assert DEFAULT_LEVELS["pointnet2"] == {"sa3": 1, "head": 2}
    tree = sigmab_pointnet2(calibration=8)
    dense = n_params(pointnet2_ssg())
    pc = tree.param_counts()
    mean_active = sum(pc["paths"]) / len(pc["paths"])
    assert 0.40 <= mean_active / dense <= 0.42
    assert abs(pc["total"] / dense - 1) < 0.10


def test_factory_loads_a_dense_checkpoint_and_names_a_bad_one(tmp_path: Path) -> None:
    torch.manual_seed(5)
    dense = pointnet2_ssg(num_classes=5, in_points=64, width=0.125)
    torch.save(dense.state_dict(), tmp_path / "dense.pt")
    tree = sigmab_pointnet2(num_classes=5, in_points=64, calibration=8, width=0.125,
                            checkpoint=tmp_path / "dense.pt")
    # the backbone is the checkpoint's sa1 + sa2, unchanged
    assert torch.equal(tree.backbone["sa2"].mlp[0].weight, dense.sa2.mlp[0].weight)
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match=r"wrong\.pt.*missing key 'sa1\."):
        sigmab_pointnet2(num_classes=5, in_points=64, calibration=8, width=0.125,
                         checkpoint=tmp_path / "wrong.pt")


def test_weight_coverage_of_a_hand_built_two_leaf_tree() -> None:
    # A BasicBlock ResNet [1, 1], width 4, 3 classes, cifar stem; layer2 (8 channels) and the
    # head in 2 leaves. By hand, leaf L keeps channels 0-3 of both layer2 groups (the block's
    # first conv output "0.bn1", and "res": its second conv and downsample output), leaf R
    # keeps 4-7: every channel lives in a leaf (channel coverage 1.0). Weight entries (o, i):
    #   layer2.0.conv1  8 x 4 x 3x3 = 288: input = layer1's 4 channels (backbone, all kept), so
    #                   L covers o 0-3, R o 4-7: all 288;
    #   layer2.0.conv2  8 x 8 x 3x3 = 576: L covers o 0-3 x i 0-3, R o 4-7 x i 4-7: 2 x 16
    #                   pairs x 9 = 288 (the off-diagonal blocks lie in no leaf);
    #   downsample      8 x 4 x 1x1 = 32: all (input = layer1, all kept);
    #   fc              3 x 8 = 24: L reads res 0-3, R 4-7: all 24.
    # Tree stages 920 entries, 632 covered; the dense model adds stem 4 x 3 x 9 = 108 and
    # layer1 2 x (4 x 4 x 9) = 288, all in the backbone: 1,316 entries, 1,028 covered.
    from edgesim.zoo.sigmab.tree import weight_coverage

    torch.manual_seed(0)
    dense = ResNet(BasicBlock, [1, 1], num_classes=3, stem="cifar", width=4).eval()
    tree = to_tree(dense, torch.randn(8, 3, 8, 8), arch="resnet", levels={"layer2": 1})
    config = copy.deepcopy(tree.config)
    for key, chans in (("L", [0, 1, 2, 3]), ("R", [4, 5, 6, 7])):
        stage = config["nodes"][key]["stages"]
        stage["layer2"]["keep"] = {"0.bn1": 4, "res": 4}
        stage["layer2"]["channels"] = {"0.bn1": chans, "res": chans}
        stage["head"]["in"] = 4
    assert weight_coverage(config) == {"dense_weights": 1316, "covered_weights": 1028,
                                       "tree_weights": 920, "tree_covered": 632}
    tree.config = config
    cov = tree.coverage()
    assert cov["channel_coverage"] == 1.0
    assert cov["weight_coverage"] == round(1028 / 1316, 4)
