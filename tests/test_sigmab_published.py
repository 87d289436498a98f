"""Sigma-Branch as published: the pretrained weights distributed over a tree whose internal
nodes hold layers, annealed soft routing that ends hard, and trees built from a user's dense
checkpoint (issue 10, item 1)."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest
import torch
from sigmab_trees import LEVELS, check_hard_routing, n_params, tiny_pointnet_tree
from torch import nn

from edgesim.errors import ModelError
from edgesim.zoo.data import synthetic_images, synthetic_points
from edgesim.zoo.pointnet2 import pointnet2_ssg
from edgesim.zoo.registry import ModelSpec
from edgesim.zoo.resnet import Bottleneck, ResNet
from edgesim.zoo.sigmab import (
    Router,
    SigmaBranchFamily,
    SigmaTree,
    allocate,
    fine_tune,
    load_tree,
    save_tree,
    temperature_schedule,
    to_tree,
)
from edgesim.zoo.sigmab.checkpoint import check_config


@pytest.fixture(scope="module")
def resnet() -> tuple[nn.Module, SigmaTree, torch.Tensor, torch.Tensor]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dense = ResNet(Bottleneck, [1, 1, 2, 1], num_classes=6, stem="cifar", width=4).eval()
    x, y = synthetic_images(24, shape=(3, 16, 16), clusters=6, seed=0)
    return dense, to_tree(dense, x[:16], levels=LEVELS), x, y


@pytest.fixture(scope="module")
def pointnet() -> tuple[nn.Module, SigmaTree, torch.Tensor]:
    return tiny_pointnet_tree()


# -- channels distributed over the tree ----------------------------------------------------


def test_allocate_covers_every_channel_and_hands_out_the_copies_asked_for() -> None:
    gen = torch.Generator().manual_seed(0)
    for m, c in ((2, 7), (4, 16), (8, 5)):
        imp = torch.rand(m, c, generator=gen) ** 3
        for total in (c, (m * c) // 2, m * c):
            sets = allocate(imp, total)
            assert len(sets) == m
            assert set().union(*(s.tolist() for s in sets)) == set(range(c))
            assert all(len(s) >= 1 for s in sets)
            assert sum(len(s) for s in sets) == max(total, m)
            assert all(torch.equal(s, s.sort().values) for s in sets)
            assert all(torch.equal(a, b) for a, b in zip(sets, allocate(imp, total),
                                                         strict=True))


def test_a_channel_goes_to_the_node_that_uses_it_most() -> None:
    imp = torch.tensor([[4.0, 3.0, 0.1, 0.1], [0.1, 0.2, 2.0, 1.0]])
    a, b = allocate(imp, 4)   # one copy each: a partition by relative importance
    assert a.tolist() == [0, 1]
    assert b.tolist() == [2, 3]


def test_allocate_ties_go_to_the_lowest_node_then_the_lowest_channel() -> None:
    # Relative importance = importance / the node's mean (both means are 1 here):
    #   node 0: [2, 1, 1, 0], node 1: [0, 1, 1, 2].
    # First homes: channel 0 -> node 0, channel 3 -> node 1; channels 1 and 2 tie (1 vs 1) and
    # go to the lower node 0. One copy is left (total 5 - 4 homes) for the unchosen pairs
    # (0,3): 0, (1,0): 0, (1,1): 1, (1,2): 1; (1,1) and (1,2) tie and the lower channel wins.
    imp = torch.tensor([[2.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 2.0]])
    assert [s.tolist() for s in allocate(imp, 5)] == [[0, 1, 2], [1, 3]]
    # all equal: every channel's home is node 0; node 1, left empty, takes its first channel
    assert [s.tolist() for s in allocate(torch.ones(2, 3), 4)] == [[0, 1, 2], [0]]


def test_the_tree_is_the_same_with_one_or_two_blas_threads() -> None:
    # Law: which channels a node keeps, which calibration inputs build each child and the
    # routers' stored numbers do not depend on how BLAS splits its sums. The construction
    # runs in float64; in float32 the router centres and scales of this tree differed in their
    # last bits between 1 and 2 threads (measured on an AMD EPYC, torch 2.13 with MKL). Fixed
    # fractions skip the budget's bisection (the slow part, and integer arithmetic).
    import json

    from edgesim.testing import under_thread_counts

    torch.manual_seed(0)
    dense = pointnet2_ssg(num_classes=5, in_points=32, width=0.125).eval()
    x, _ = synthetic_points(8, points=32, clusters=4, seed=0)

    def build():
        tree = to_tree(dense, x, fractions={"sa3": 0.7, "head": 0.4})
        return (json.dumps(tree.config, sort_keys=True),
                {k: v.numpy().tobytes() for k, v in tree.state_dict().items()})

    out = under_thread_counts(build)
    assert out[0][0] == out[1][0]
    assert out[0][1] == out[1][1]


@pytest.mark.parametrize("which", ["resnet", "pointnet"])
def test_coverage_is_complete_and_leaves_differ_on_clustered_data(which, resnet, pointnet):
    tree = resnet[1] if which == "resnet" else pointnet[1]
    rows = tree.node_report()
    assert rows
    assert {r["coverage"] for r in rows} == {1.0}        # every dense channel in some node
    leaves = [k for k in tree.nodes if len(k) == tree.depth]
    cfg = tree.config["nodes"]
    for k in leaves:
        sib = k[:-1] + ("R" if k[-1] == "L" else "L")
        for s, scfg in cfg[k]["stages"].items():
            for g, sel in scfg["channels"].items():
                if len(sel) < 2:
                    continue
                assert sel != cfg[sib]["stages"][s]["channels"][g], (k, s, g)
    assert all(r["jaccard"] < 1 for r in rows if r["level"] > 0)
    # branch widths differ: not every leaf keeps as many channels as every other
    widths = {tuple(sorted((r["stage"], r["group"], r["kept"]) for r in rows if r["node"] == k))
              for k in leaves}
    assert len(widths) > 1


def test_kept_channels_are_the_dense_channels_of_their_node(resnet) -> None:
    dense, tree, _, _ = resnet
    cfg = tree.config["nodes"]["L"]["stages"]["layer3_1"]
    sel = torch.tensor(cfg["channels"]["0.bn1"])
    w = tree.nodes["L"].layer3_1[0].conv1.weight
    assert torch.equal(w, dense.layer3[1].conv1.weight[sel])


def test_stored_parameters_are_the_dense_ones_and_a_path_about_two_fifths(resnet) -> None:
    dense, tree, _, _ = resnet
    pc = tree.param_counts()
    # routers (3 x 2 x 64) aside, the nodes of each depth hold their dense stages' parameters
    assert abs(pc["total"] - n_params(dense)) <= 0.10 * n_params(dense)
    assert max(pc["paths"]) < pc["total"]


# -- a hierarchy: internal nodes hold layers, routers read their own node --------------------


def test_each_router_reads_the_output_of_its_own_node(resnet) -> None:
    _, tree, x, _ = resnet
    seen: dict[str, torch.Tensor] = {}
    names = {m: n for n, m in tree.named_modules()}
    hooks = [m.register_forward_hook(lambda m, i, o: seen.setdefault(names[m], i[0]))
             for m in tree.modules() if isinstance(m, Router)]
    with torch.no_grad():
        tree.forward_path(x[:3], 1)   # L-R
        back = tree._backbone(x[:3])
        own = tree._run_node("L", back)
    for h in hooks:
        h.remove()
    assert torch.equal(seen["nodes.root.router"], back)
    assert torch.equal(seen["nodes.L.router"], own)
    assert not torch.equal(own, back)                 # node L's layers changed the features
    assert tree.param_counts()["nodes"]["L"] > 0


def test_hard_routed_output_equals_the_chosen_paths_forward_path(resnet, pointnet) -> None:
    for tree, x in ((resnet[1], resnet[2]), (pointnet[1], pointnet[2])):
        check_hard_routing(tree, x)
        with torch.no_grad():   # the straight-through pass of the hard phase gives the same
            assert torch.allclose(tree._soft(x, 0.05, hard=True).out, tree(x), atol=1e-5)


# -- soft routing annealed to hard ---------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 7, 40])
def test_the_temperature_schedule_ends_in_hard_routing(steps) -> None:
    sched = temperature_schedule(steps, 1.0, 0.05, hard=0.25)
    assert len(sched) == steps
    assert sched[-1] is None                           # the last step is hard
    soft = [t for t in sched if t is not None]
    assert sched[:len(soft)] == soft                   # soft first, then hard only
    assert all(a >= b for a, b in itertools.pairwise(soft))
    if len(soft) > 1:
        assert soft[0] == 1.0
        assert soft[-1] == pytest.approx(0.05)


def test_bad_schedules_are_one_line() -> None:
    with pytest.raises(ModelError, match="end <= start"):
        temperature_schedule(4, 0.1, 1.0)
    with pytest.raises(ModelError, match="steps=-1"):
        temperature_schedule(-1)


def test_fine_tuning_reports_entropy_and_load_and_ends_hard(resnet) -> None:
    _, tree, x, y = resnet
    tree = copy.deepcopy(tree)
    history: list = []
    loader = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 24, 8)]
    losses = fine_tune(tree, loader, epochs=3, lr=1e-4, history=history)
    assert len(losses) == len(history) == 9
    assert [h.step for h in history] == list(range(1, 10))
    assert history[0].temperature == 1.0
    assert history[-1].temperature is None
    for h in history:
        assert sum(h.load) == pytest.approx(1.0, abs=1e-3)
        assert len(h.load) == tree.num_paths
        assert 0 <= h.entropy <= tree.depth + 1e-9   # bits; at most log2(leaves)
    assert history[0].entropy > 0
    assert all(h.entropy == 0 for h in history if h.temperature is None)
    # in the hard phase each input is on one leaf: a leaf's load is a count out of the batch
    for h in history:
        if h.temperature is None:
            assert all(abs(v * 8 - round(v * 8)) < 1e-3 for v in h.load)
    assert "entropy" in history[-1].line(tree.path_names())
    assert "T=hard" in history[-1].line()


# -- a dense checkpoint becomes a tree; a tree checkpoint loads as itself --------------------


SPEC = ModelSpec("sigmab_pn2_tiny", "sigmab", "edgesim.zoo.sigmab:sigmab_pointnet2",
                 {"num_classes": 5, "in_points": 64, "width": 0.125, "calibration": 8},
                 (64, 3), dynamic=True)


def test_a_dense_checkpoint_becomes_a_tree_calibrated_on_the_data(tmp_path: Path) -> None:
    torch.manual_seed(5)
    dense = pointnet2_ssg(num_classes=5, in_points=64, width=0.125).eval()
    torch.save(dense.state_dict(), tmp_path / "dense.pt")
    x, _ = synthetic_points(12, points=64, clusters=4, seed=3)
    torch.save(x, tmp_path / "calib.pt")
    tree = SigmaBranchFamily().build(SPEC, str(tmp_path / "dense.pt"), 0,
                                     str(tmp_path / "calib.pt"))
    assert isinstance(tree, SigmaTree)
    # the backbone is the user's sa1 + sa2, unchanged; the tree stores the dense parameters
    assert torch.equal(tree.backbone["sa2"].mlp[0].weight, dense.sa2.mlp[0].weight)
    assert abs(tree.param_counts()["total"] - n_params(dense)) <= 0.10 * n_params(dense)
    assert tree.config["nodes"]["root"]["calibration"] == 12   # all of --data
    assert {r["coverage"] for r in tree.node_report()} == {1.0}
    # kept rows of a node are the user's rows
    sel = torch.tensor(tree.config["nodes"]["R"]["stages"]["sa3"]["channels"]["mlp0"])
    assert torch.equal(tree.nodes["R"].sa3.mlp[0].weight, dense.sa3.mlp[0].weight[sel])
    # the tree's own checkpoint loads as itself, channel numbers included
    save_tree(tree, tmp_path / "tree.pt")
    back = SigmaBranchFamily().build(SPEC, str(tmp_path / "tree.pt"), 0, None)
    with torch.no_grad():
        assert torch.equal(back(x), tree(x))
    assert back.node_report() == tree.node_report()


def test_a_bad_dense_checkpoint_is_one_line_naming_the_file_and_key(tmp_path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match=r"wrong\.pt.*missing key 'sa1\.") as err:
        SigmaBranchFamily().build(SPEC, str(tmp_path / "wrong.pt"), 0, None)
    assert "\n" not in str(err.value)
    dense = pointnet2_ssg(num_classes=7, in_points=64, width=0.125)   # 7 classes, not 5
    torch.save(dense.state_dict(), tmp_path / "shape.pt")
    with pytest.raises(ModelError, match=r"shape\.pt.*key 'head\.fc3\.weight' has shape"):
        SigmaBranchFamily().build(SPEC, str(tmp_path / "shape.pt"), 0, None)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match=r"junk\.pt") as err:
        SigmaBranchFamily().build(SPEC, str(tmp_path / "junk.pt"), 0, None)
    assert "\n" not in str(err.value)


class _Plant:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_runs_code_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    torch.save({"sa1.mlp.0.weight": _Plant(marker)}, tmp_path / "planted.pt")
    with pytest.raises(ModelError, match=r"planted\.pt") as err:
        SigmaBranchFamily().build(SPEC, str(tmp_path / "planted.pt"), 0, None)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_recorded_channel_numbers_are_checked_when_loading(resnet, tmp_path: Path) -> None:
    _, tree, _, _ = resnet
    config = copy.deepcopy(tree.config)
    sel = config["nodes"]["L"]["stages"]["layer3_1"]["channels"]["0.bn1"]
    sel[0], sel[1] = sel[1], sel[0]
    with pytest.raises(ModelError, match=r"t\.pt: node L stage layer3_1 channels '0\.bn1'"):
        check_config(config, "t.pt")
    save_tree(tree, tmp_path / "ok.pt")
    assert load_tree(tmp_path / "ok.pt").config["cuts"] == ["layer3_1"]


def test_a_router_centre_follows_the_reach_weighted_mean_of_its_inputs() -> None:
    router = Router(2, scale=1.0)
    x = torch.tensor([[1.0, 0.0], [0.0, 4.0], [3.0, 3.0]])[:, :, None, None]
    router.track(x, torch.tensor([1.0, 3.0, 0.0]), momentum=0.5)
    # weighted mean = (1 x (1, 0) + 3 x (0, 4)) / 4 = (0.25, 3); half-way from (0, 0)
    assert torch.allclose(router.center, torch.tensor([0.125, 1.5]))
    assert not router.center.requires_grad
    router.track(x, torch.zeros(3), momentum=0.5)          # nothing reached it: unchanged
    assert torch.allclose(router.center, torch.tensor([0.125, 1.5]))


def test_the_hard_phase_leaves_the_router_centres_as_inference_uses_them(resnet) -> None:
    _, tree, x, y = resnet
    tree = copy.deepcopy(tree)
    loader = [(x[:8], y[:8])]
    fine_tune(tree, loader, epochs=2, lr=1e-4, hard=1.0)   # every step hard
    centres = {k: n.router.center.clone() for k, n in tree.nodes.items() if n.router}
    fine_tune(tree, loader, epochs=2, lr=1e-12, hard=1.0)
    for k, c in centres.items():
        assert torch.equal(tree.nodes[k].router.center, c)
