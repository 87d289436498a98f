"""edgesim.zoo.registry: lookup, suggestions, user factories, seeded builds, checkpoint errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from edgesim.errors import ModelError
from edgesim.zoo.registry import REGISTRY, ModelSpec, build_model, get_spec, register

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module ``edgesim_user_models`` on sys.path with a tiny factory and broken ones."""
    (tmp_path / "edgesim_user_models.py").write_text(textwrap.dedent("""
        from torch import nn

        def tiny(classes=3):
            return nn.Sequential(nn.Flatten(), nn.Linear(8, classes))
        tiny.input_shape = (2, 4)

        def square():
            return nn.Linear(4, 4)

        def broken():
            raise RuntimeError("no such layer")

        def not_a_module():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "edgesim_user_models", raising=False)
    return "edgesim_user_models"


def test_registry_has_the_dense_resnets() -> None:
    assert get_spec("dense_r50").input_shape == (3, 224, 224)
    assert get_spec("dense_r50").kwargs == {"num_classes": 1000}
    spec = get_spec("dense_r50_c100")
    assert (spec.family, spec.input_shape) == ("dense", (3, 32, 32))
    assert spec.kwargs["num_classes"] == 100


def test_registry_import_does_not_import_torch() -> None:
    code = ("import sys, edgesim.zoo.registry as r; r.get_spec('dense_r50'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(ModelError) as info:
        get_spec("dens_r50")
    assert str(info.value).startswith("unknown model 'dens_r50'; did you mean dense_r50, ")


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ModelError, match=r"known models: .*dense_r50"):
        get_spec("zzz")


def test_register_conflict_and_bad_family() -> None:
    spec = ModelSpec("test_tiny_reg", "dense", "edgesim_user_models:tiny", {}, (2, 4))
    try:
        register(spec)
        register(spec)  # the same spec again is fine
        with pytest.raises(ModelError, match="already registered"):
            register(ModelSpec("test_tiny_reg", "dense", "other.mod:f"))
    finally:
        REGISTRY.pop("test_tiny_reg", None)
    with pytest.raises(ModelError, match="family 'dens'"):
        ModelSpec("x", "dens", "a.b:c")
    with pytest.raises(ModelError, match=r"package\.module:function"):
        ModelSpec("x", "dense", "resnet50")


def test_user_factory_spec(user_module: str) -> None:
    spec = get_spec(f"{user_module}:tiny")
    assert (spec.family, spec.input_shape) == ("dense", (2, 4))
    assert get_spec(f"{user_module}:square").input_shape == (3, 224, 224)  # the default
    model = build_model(spec)
    assert model(torch.zeros(1, 2, 4)).shape == (1, 3)


def test_same_seed_same_weights(user_module: str) -> None:
    spec = get_spec(f"{user_module}:tiny")
    a, b, c = build_model(spec, seed=0), build_model(spec, seed=0), build_model(spec, seed=1)
    assert torch.equal(a[1].weight, b[1].weight)
    assert not torch.equal(a[1].weight, c[1].weight)


@pytest.mark.parametrize(("name", "message"), [
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("edgesim_user_models:missing", "has no callable 'missing'"),
])
def test_import_errors(user_module: str, name: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        get_spec(name)


@pytest.mark.parametrize(("factory", "message"), [
    ("broken", "raised RuntimeError: no such layer"),
    ("not_a_module", "returned int, expected a torch.nn.Module"),
])
def test_factory_errors(user_module: str, factory: str, message: str) -> None:
    spec = ModelSpec("bad", "dense", f"{user_module}:{factory}")
    with pytest.raises(ModelError, match=message):
        build_model(spec)


def test_checkpoint_round_trip(user_module: str, tmp_path: Path) -> None:
    spec = get_spec(f"{user_module}:tiny")
    src = build_model(spec, seed=5)
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": src.state_dict()}, path)
    loaded = build_model(spec, weights=str(path), seed=0)
    assert torch.equal(loaded[1].weight, src[1].weight)


def test_checkpoint_missing_file(user_module: str, tmp_path: Path) -> None:
    spec = get_spec(f"{user_module}:tiny")
    with pytest.raises(ModelError, match=r"checkpoint file '.*nope\.pt' does not exist"):
        build_model(spec, weights=str(tmp_path / "nope.pt"))


def test_checkpoint_not_a_state_dict(user_module: str, tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ModelError, match=r"list\.pt' is not a state_dict"):
        build_model(get_spec(f"{user_module}:tiny"), weights=str(path))


def test_checkpoint_wrong_shape_names_key(user_module: str, tmp_path: Path) -> None:
    state = build_model(get_spec(f"{user_module}:tiny")).state_dict()
    state["1.weight"] = torch.zeros(5, 8)
    path = tmp_path / "wide.pt"
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"wide\.pt': key '1\.weight' has shape \(5, 8\), "
                                         r"expected \(3, 8\)"):
        build_model(get_spec(f"{user_module}:tiny"), weights=str(path))


def test_checkpoint_missing_and_extra_keys(user_module: str, tmp_path: Path) -> None:
    spec = get_spec(f"{user_module}:tiny")
    state = build_model(spec).state_dict()
    path = tmp_path / "partial.pt"
    torch.save({"1.weight": state["1.weight"]}, path)
    with pytest.raises(ModelError, match=r"missing key '1\.bias' \(expected shape \(3,\)\)"):
        build_model(spec, weights=str(path))
    torch.save({**state, "extra.weight": torch.zeros(1)}, path)
    with pytest.raises(ModelError, match=r"unexpected key 'extra\.weight'"):
        build_model(spec, weights=str(path))


def test_dense_r50_c100_builds() -> None:
    model = build_model(get_spec("dense_r50_c100"))
    assert sum(p.numel() for p in model.parameters()) == 23_705_252
    assert not model.training


def test_registry_has_the_calibration_models() -> None:
    v1, lap, mbv2 = get_spec("dense_r50v1"), get_spec("dense_r50v1_laplace"), get_spec("dense_mbv2")
    assert v1.factory == lap.factory == "edgesim.zoo.resnet:resnet50_v1"
    # the Laplace model differs from v1 only by its init kwarg, which is part of every cache key
    # (the spec's kwargs are), so the two never share a cached workload
    assert dict(lap.kwargs) == {**v1.kwargs, "init": "laplace"}
    assert "init" not in get_spec("dense_r50").kwargs  # existing models keep their own init
    assert (mbv2.family, mbv2.input_shape) == ("dense", (3, 224, 224))
    assert mbv2.factory == "edgesim.zoo.mobilenetv2:mobilenet_v2"


def test_init_kwarg_is_applied_not_passed(user_module: str, tmp_path: Path) -> None:
    # ``tiny(classes=3)`` takes no ``init``: build_model must keep it from the factory.
    spec = ModelSpec("t_lap", "dense", f"{user_module}:tiny", {"init": "laplace"}, (2, 4))
    plain = build_model(get_spec(f"{user_module}:tiny"))
    lap, again = build_model(spec), build_model(spec)
    assert torch.equal(lap[1].weight, again[1].weight)  # seeded
    assert not torch.equal(lap[1].weight, plain[1].weight)
    assert torch.count_nonzero(lap[1].bias) == 0  # the Laplace init zeroes biases
    # a checkpoint is loaded after the init, so it wins
    path = tmp_path / "plain.pt"
    torch.save(plain.state_dict(), path)
    assert torch.equal(build_model(spec, weights=str(path))[1].weight, plain[1].weight)
