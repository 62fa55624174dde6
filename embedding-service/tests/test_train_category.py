"""The category tail: its copy of the last blocks computes what the network computes, what it saves
is what the export puts in the graph, and the service names categories by the graph's output."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from embedding_service import finetune
from embedding_service.config import Settings
from embedding_service.export import NETWORKS, export, pooled_module, pretrained, probabilities_module
from embedding_service.finetune import trunk_module
from embedding_service.head import ClassifierHead, LinearHead
from embedding_service.model import EmbeddingModel, category_graph_path
from embedding_service.train_category import (
    UNLEARNT_ARTICLE_TYPES,
    Images,
    augmented,
    category_module,
    class_weights,
    learnt_catalog_rows,
    load_category,
    save,
    souped,
)
from embedding_service.train_head import held_out
from shared.contracts import Category

LITE0 = NETWORKS["efficientnet-lite0"]
LABELS = ["bottomwear", "dress", "topwear"]


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return pretrained("efficientnet-lite0").eval()


def _trained(net: Any) -> Any:
    """A category tail whose weights differ from ImageNet's and whose layer favours a category."""
    model = category_module(net, len(LABELS)).eval()
    with torch.no_grad():
        model.conv_head.weight.mul_(1.1)
        model.layer.bias.copy_(torch.tensor([0.0, 3.0, 1.0]))
    return model


def test_the_tail_starts_as_the_networks_own_last_blocks(net: torch.nn.Module) -> None:
    image = torch.randn(2, 3, LITE0.input_size, LITE0.input_size)
    with torch.no_grad():
        features, _ = pooled_module(net, LITE0.descriptor_blocks)(image)
        trunk, _ = trunk_module(net, LITE0.descriptor_blocks)(image)
        pooled = category_module(net, len(LABELS)).eval().pooled(trunk)
    assert torch.allclose(pooled, torch.nn.functional.normalize(features, dim=1), atol=1e-5)


def test_training_the_tail_leaves_the_retrieval_blocks_alone(net: Any) -> None:
    before = net._conv_head.weight.clone()
    model = _trained(net)
    assert not torch.equal(model.conv_head.weight, net._conv_head.weight)
    assert torch.equal(net._conv_head.weight, before)


def test_the_saved_tail_is_what_the_graph_computes_and_the_service_reads(
    net: torch.nn.Module, tmp_path: Path
) -> None:
    model = _trained(net)
    path = tmp_path / "category-tail.npz"
    save(model, LABELS, path, {})
    loaded, labels = load_category(pretrained("efficientnet-lite0"), path)
    assert labels == LABELS
    image = torch.randn(3, 3, LITE0.input_size, LITE0.input_size)
    with torch.no_grad():
        trunk, _ = trunk_module(net, LITE0.descriptor_blocks)(image)
        expected = torch.softmax(model(trunk), dim=1).numpy()
        *_, graph_trunk = pooled_module(net, LITE0.descriptor_blocks, trunk=True)(image)
        graph_like = probabilities_module(loaded)(graph_trunk)
    np.testing.assert_allclose(graph_like.numpy(), expected, atol=2e-3)  # float16 on disk

    backbone = tmp_path / "backbone.onnx"
    export("efficientnet-lite0", backbone, category_tail=path)
    assert category_graph_path(backbone).exists()
    served = EmbeddingModel(Settings(backbone_path=backbone, projection="none", head_path=tmp_path / "none"))
    served.load()
    assert served.category_labels == LABELS and served.name.endswith("+category-tail")
    crops = [np.full((90, 60, 3), colour, np.uint8) for colour in ((200, 30, 30), (30, 30, 200))]
    outputs = served.embed_outputs(crops, tail_rows=[0, 1])
    np.testing.assert_allclose(outputs["category"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(outputs["features"], axis=1), 1.0, atol=1e-5)

    worn = served.embed_outputs(crops)
    assert "category" not in worn, "the tail runs only for the crops asked"
    second = served.embed_outputs(crops, tail_rows=[1])
    np.testing.assert_allclose(second["category"], outputs["category"][1:], atol=1e-5)
    for name in worn:
        np.testing.assert_allclose(second[name], worn[name], atol=1e-5, err_msg=name)

    served.head = _head(len(worn["features"][0]), served.backbone)
    items = served.predict(crops, colours=False, products=[1])
    assert set(items[0].category_scores) == {Category.topwear, Category.footwear}, "the head's"
    tail = dict(zip(LABELS, outputs["category"][1].tolist(), strict=True))
    assert {c.value: s for c, s in items[1].category_scores.items()} == pytest.approx(tail, abs=1e-4)
    assert items[0].article_types and items[1].article_types, "article types stay the head's"

    export("efficientnet-lite0", backbone)
    assert not category_graph_path(backbone).exists(), "no stale category graph beside a plain backbone"


def _head(dim: int, backbone: str) -> ClassifierHead:
    """A head that names only topwear and footwear (the tail also knows dresses)."""
    rng = np.random.default_rng(0)
    category = LinearHead(rng.normal(size=(dim, 2)), np.zeros(2), ["topwear", "footwear"])
    article = LinearHead(rng.normal(size=(dim, 2)), np.zeros(2), ["Tshirts", "Sandals"])
    kinds = {"Tshirts": Category.topwear, "Sandals": Category.footwear}
    return ClassifierHead(category, article, kinds, backbone)


def test_class_weights_give_each_category_the_root_of_its_count() -> None:
    labels = np.array([0] * 100 + [1] * 25 + [2] * 4)
    weights = class_weights(labels, 3)
    mass = np.array([weights[labels == c].sum() for c in range(3)])
    np.testing.assert_allclose(mass / mass[0], [1.0, 0.5, 0.2], atol=1e-9)
    assert np.isclose(weights.sum(), 1.0)


def test_an_augmented_photo_is_a_slightly_different_shot_of_it() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 150, 3), np.uint8))
    first = augmented(image, random.Random(1))
    assert first.size[0] >= 0.75 * 0.85 * 150 and first.size[1] >= 0.75 * 0.85 * 200
    assert first.size[0] <= 150 and first.size[1] <= 200
    assert np.array_equal(np.asarray(first), np.asarray(augmented(image, random.Random(1))))
    assert not np.array_equal(np.asarray(first), np.asarray(augmented(image, random.Random(2))))


def test_rows_keep_only_images_of_a_known_category() -> None:
    images = Images(
        np.zeros((4, 1, 1, 1), np.float16), np.array([0, -1, 2, 1]), np.arange(4), np.ones(4, dtype=bool)
    )
    assert images.rows(np.array([True, True, True, False])).tolist() == [0, 2]


def test_the_tail_learns_no_catalog_image_of_an_unlearnt_article_type_nor_held_out() -> None:
    product_ids = np.array([str(pid) for pid in range(200)])
    article_of = {pid: ("Kurtas" if int(pid) % 3 == 0 else "Tshirts") for pid in product_ids}
    source = np.repeat(np.arange(200), 2)  # each crop and one view of it
    images = Images(
        np.zeros((400, 1, 1, 1), np.float16), np.zeros(400, dtype=int), source, np.arange(400) % 2 == 0
    )
    rows = learnt_catalog_rows(images, product_ids, article_of, UNLEARNT_ARTICLE_TYPES)
    learnt = product_ids[source[rows]]
    assert len(learnt) > 0
    assert all(article_of[pid] == "Tshirts" for pid in learnt)
    assert not held_out(learnt).any()
    every_kind = learnt_catalog_rows(images, product_ids, article_of, [])
    assert set(rows) < set(every_kind)
    assert {article_of[pid] for pid in product_ids[source[every_kind]]} == {"Kurtas", "Tshirts"}


def test_the_soup_of_tails_holds_the_mean_of_their_weights(net: torch.nn.Module) -> None:
    tails = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        tails.append(category_module(net, len(LABELS)))
    first, second = (tail.layer.weight.detach().clone() for tail in tails)
    block = tails[0].blocks[0].state_dict()
    soup = souped(tails)
    assert torch.allclose(soup.layer.weight, (first + second) / 2)
    assert not torch.allclose(soup.layer.weight, first)
    for key, value in soup.blocks[0].state_dict().items():  # the same network's copies: unchanged
        assert torch.equal(value, block[key])


def test_a_tail_trained_from_another_block_is_refused_with_what_to_do(
    net: torch.nn.Module, tmp_path: Path
) -> None:
    model = category_module(net, len(LABELS))
    shallower = {k: v for k, v in model.state_dict().items() if not k.startswith("blocks.0.")}
    path = tmp_path / "category-tail.npz"
    finetune.save_weights(shallower, path, {}, labels=np.array(LABELS))
    with pytest.raises(ValueError, match="make train-category"):
        load_category(net, path)
