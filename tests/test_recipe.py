"""Recipes: every shipped recipe loads and round-trips; --set overrides are type-checked."""

import dataclasses

import pytest

from cnnedge.errors import CnnedgeError
from cnnedge.recipe import (
    Recipe,
    apply_overrides,
    from_dict,
    list_recipes,
    load_recipe,
    load_yaml,
    save_yaml,
    to_dict,
)


def test_shipped_recipes_exist():
    names = list_recipes()
    for required in ("fashion_mnist", "fashion_mnist_tiny", "cifar10", "cifar10_tiny"):
        assert required in names


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_loads_and_roundtrips(name, tmp_path):
    r = load_recipe(name)
    assert isinstance(r, Recipe) and r.name == name
    assert from_dict(to_dict(r)) == r
    save_yaml(r, tmp_path / "r.yaml")
    assert load_yaml(tmp_path / "r.yaml") == r


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_model_is_registered(name):
    from cnnedge.models import list_models

    assert load_recipe(name).model.name in list_models()


def test_overrides_types():
    r = load_recipe("fashion_mnist")
    r2 = apply_overrides(
        r,
        [
            "train.epochs=3",
            "optim.lr=0.01",
            "data.image_size=32,32",
            "qat.enabled=false",
            "model.kwargs.dropout=0.2",
            "augment.ops=[flip]",
            "data.data_dir=none",
        ],
    )
    assert r2.train.epochs == 3 and isinstance(r2.train.epochs, int)
    assert r2.optim.lr == 0.01
    assert r2.data.image_size == (32, 32)
    assert r2.qat.enabled is False
    assert r2.model.kwargs["dropout"] == 0.2
    assert r2.augment.ops == ("flip",)
    assert r2.data.data_dir is None
    assert r.model.kwargs is not r2.model.kwargs  # a deep copy: nothing shared with r
    assert dataclasses.asdict(r) == dataclasses.asdict(load_recipe("fashion_mnist"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=three", "must be an integer"),
        ("train.epochs=2.5", "must be an integer"),
        ("optim.name=rmsprop", "must be one of adam, adamw, sgd"),
        ("qat.enabled=maybe", "true or false"),
        ("train.epoch=3", "did you mean 'train.epochs'"),
        ("trian.epochs=3", "did you mean 'train.epochs'"),
        ("train=3", "is a section"),
        ("train.epochs", "key=value"),
        ("data.image_size=1,2,3", "HxW like 64x64, or keep"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(CnnedgeError, match=message):
        apply_overrides(load_recipe("fashion_mnist"), [override])


def test_unknown_recipe_hint():
    with pytest.raises(CnnedgeError, match="did you mean 'fashion_mnist'"):
        load_recipe("fashion_minst")


def test_user_recipe_file(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text(
        "from cnnedge.recipe import Recipe, TrainConfig\n"
        "RECIPE = Recipe(name='mine', train=TrainConfig(epochs=1))\n"
    )
    assert load_recipe(str(f)).train.epochs == 1
    bad = tmp_path / "bad.py"
    bad.write_text("RECIPE = 3\n")
    with pytest.raises(CnnedgeError, match="does not define RECIPE"):
        load_recipe(str(bad))
    with pytest.raises(CnnedgeError, match="not found"):
        load_recipe(str(tmp_path / "nope.py"))


def test_exponent_floats_and_missing_name():
    # YAML 1.1 reads "1e-3" (no dot) as text; a float field still takes it
    assert apply_overrides(load_recipe("fashion_mnist"), ["optim.lr=1e-3"]).optim.lr == 0.001
    with pytest.raises(CnnedgeError, match="lacks name"):
        from_dict({})
