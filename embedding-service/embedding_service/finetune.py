"""Fine-tune the backbone's last blocks on the catalog (make train-backbone).

The trunk (stem and blocks 0..TAIL_FROM-1) keeps ImageNet's weights. It runs once per image, in
onnxruntime (an export made for the purpose), on every catalog crop and on distorted views of the
training products (shared/distortions.py); its outputs are cached. The tail (the last blocks and
the head convolution, about 2.4M weights) is then trained in torch on them:

- InfoNCE between two images of the same product (the crop or one of its views), against the other
  products of the batch, on the descriptor: a product must find itself through a shopper's photo;
- the average-pooled features must stay ImageNet's (cosine distance to them, weighted by
  ``--keep-features``): the category and gender heads read them, and on real photos (make eval's
  person and consumer photos) features tuned on catalog shots told garment kinds apart worse.

Batch normalisation keeps ImageNet's statistics. The products make eval measures retrieval on
(shared.splits) are never seen; on them the card reports view-to-crop recall of the descriptor
before and after. Output: the tail's weights in float16 (assets/backbone-tail.npz, with its card),
which embedding_service.export puts over ImageNet's. No tail ships: the one measured best found
distorted products better but lost a dev photo's dress (README, Retrieval quality).

    python -m embedding_service.finetune --crops data/cache/crops/<key> \
        --output embedding_service/assets/backbone-tail.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from embedding_service.export import NETWORKS, gem, pretrained
from embedding_service.preprocess import to_input
from embedding_service.views import view_pixels
from shared import distortions
from shared.splits import retrieval_held_out

logger = logging.getLogger("embedding-service")
TAIL_FROM = 12  # blocks from here on, and the head convolution, are trained
VIEW_SEED = 1000  # views other than those of embedding_service.views (seeds from 0)
TEMPERATURE = 0.05
CACHE_VERSION = 1


def trunk_module(net: Any, descriptor_blocks: tuple[int, int]) -> Any:
    """The frozen part of ``net`` (stem, blocks before TAIL_FROM) as a module giving its last
    feature map and the pooled early block the descriptor keeps."""
    import torch

    early_block = min(descriptor_blocks)
    if early_block >= TAIL_FROM or max(descriptor_blocks) < TAIL_FROM:
        raise ValueError("the tail must hold the late descriptor block and not the early one")

    class TrunkModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.net._swish(self.net._bn0(self.net._conv_stem(image)))
            early = x
            for index, block in enumerate(self.net._blocks[:TAIL_FROM]):
                x = block(x)
                if index == early_block:
                    early = gem(x)
            return x, early

    return TrunkModule()


def tail_parameters(net: Any) -> dict[str, Any]:
    """The trained weights, by their names in the network's state dict."""
    trained = (*(f"_blocks.{i}." for i in range(TAIL_FROM, len(net._blocks))), "_conv_head.")
    return {name: p for name, p in net.named_parameters() if name.startswith(trained)}


def tail_forward(net: Any, x: Any, early: Any) -> tuple[Any, Any]:
    """(features, descriptor) from the trunk's outputs, as embedding_service.export computes them."""
    import torch

    late = []
    for block in net._blocks[TAIL_FROM:]:
        x = block(x)
        late.append(x)
    head = net._swish(net._bn1(net._conv_head(x)))
    return head.mean((2, 3)), torch.cat([gem(head), gem(late[-1]), early], dim=1)


# --- the trunk's outputs, cached ----------------------------------------------------------------


def export_trunk(module: Any, size: int, path: Path) -> None:
    import torch

    torch.onnx.export(
        module,
        (torch.randn(2, 3, size, size),),
        str(path),
        opset_version=17,
        input_names=["image"],
        output_names=["trunk", "early"],
        dynamic_axes={"image": {0: "batch"}, "trunk": {0: "batch"}, "early": {0: "batch"}},
        dynamo=False,
    )


def trunk_outputs(
    onnx_path: Path, images: list[tuple[int, int]], crops: Path, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The trunk's outputs on each (crop, view) of ``images``: view -1 is the crop itself. Inputs
    are made on two threads while onnxruntime runs the previous batch."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def batch_input(part: list[tuple[int, int]]) -> np.ndarray:
        return np.stack(
            list(pool.map(lambda iv: to_input(view_pixels(crops, iv[0], iv[1], VIEW_SEED), size), part))
        )

    batches = [images[start : start + 64] for start in range(0, len(images), 64)]
    trunks: list[np.ndarray] = []
    earlies: list[np.ndarray] = []
    with ThreadPoolExecutor(2) as pool, ThreadPoolExecutor(1) as ahead:
        pending = ahead.submit(batch_input, batches[0])
        for number, _ in enumerate(batches):
            batch = pending.result()
            if number + 1 < len(batches):
                pending = ahead.submit(batch_input, batches[number + 1])
            trunk, early = session.run(["trunk", "early"], {"image": batch})
            trunks.append(trunk.astype(np.float16))
            earlies.append(early.astype(np.float16))
            if number % 40 == 0:
                logger.info("trunk: images %d/%d", (number + 1) * 64, len(images))
    return np.concatenate(trunks), np.concatenate(earlies)


def cached_trunk_outputs(
    network: str, net: Any, crops: Path, wanted: list[tuple[int, int]], cache: Path
) -> tuple[np.ndarray, np.ndarray]:
    """The trunk's outputs on ``wanted`` (see trunk_outputs), kept in ``cache`` by all they depend on."""
    # the views are drawn by shared/distortions.py: its change makes them (and the trunk outputs) anew
    drawn_by = hashlib.sha1(Path(distortions.__file__).read_bytes()).hexdigest()
    named = json.dumps([CACHE_VERSION, network, TAIL_FROM, str(crops.resolve()), wanted, drawn_by])
    key = hashlib.sha1(named.encode()).hexdigest()[:12]
    path = cache / f"trunk-{key}.npz"
    if path.exists():
        data = np.load(path)
        return data["trunk"], data["early"]
    cache.mkdir(parents=True, exist_ok=True)
    onnx_path = cache / f"trunk-{key}.onnx"
    shape = NETWORKS[network]
    export_trunk(trunk_module(net, shape.descriptor_blocks).eval(), shape.input_size, onnx_path)
    outputs = trunk_outputs(onnx_path, wanted, crops, shape.input_size)
    onnx_path.unlink()
    np.savez(path, trunk=outputs[0], early=outputs[1])
    return outputs


# --- training -------------------------------------------------------------------------------------


def info_nce(a: Any, b: Any) -> Any:
    """Symmetric InfoNCE: row i of ``a`` must be nearest row i of ``b`` among all rows of ``b``."""
    import torch

    a = torch.nn.functional.normalize(a, dim=1)
    b = torch.nn.functional.normalize(b, dim=1)
    logits = a @ b.T / TEMPERATURE
    target = torch.arange(len(a))
    return (
        torch.nn.functional.cross_entropy(logits, target)
        + torch.nn.functional.cross_entropy(logits.T, target)
    ) / 2


def pairs(
    images_of: list[list[int]], batch: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """An epoch of (products, rows of one image of each, rows of another image of each)."""
    order = rng.permutation(len(images_of))
    for start in range(0, len(order) - batch + 1, batch):
        products = order[start : start + batch]
        chosen = [rng.choice(images_of[p], size=2, replace=False) for p in products]
        yield products, np.array([c[0] for c in chosen]), np.array([c[1] for c in chosen])


class Examples:
    """The cached trunk outputs and which rows are images of which product."""

    def __init__(self, trunk: np.ndarray, early: np.ndarray, rows: list[tuple[int, int]]) -> None:
        self.trunk, self.early = trunk, early
        self.row_of = {image: row for row, image in enumerate(rows)}

    def tensors(self, rows: np.ndarray) -> tuple[Any, Any]:
        import torch

        return (
            torch.from_numpy(self.trunk[rows].astype(np.float32)),
            torch.from_numpy(self.early[rows].astype(np.float32)),
        )

    def outputs(self, net: Any, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Unit (features, descriptors) of ``rows`` through the tail as it is now."""
        import torch

        parts: list[tuple[np.ndarray, np.ndarray]] = []
        with torch.no_grad():
            for start in range(0, len(rows), 256):
                outputs = tail_forward(net, *self.tensors(np.array(rows[start : start + 256])))
                features, descriptor = (torch.nn.functional.normalize(o, dim=1).numpy() for o in outputs)
                parts.append((features, descriptor))
        return np.concatenate([f for f, _ in parts]), np.concatenate([d for _, d in parts])


def view_recall(
    net: Any, examples: Examples, catalog_size: int, queries: list[tuple[int, int]]
) -> dict[str, float]:
    """Recall@1 and @10 of distorted views (``queries``) among the descriptors of every crop."""
    _, gallery = examples.outputs(net, [examples.row_of[(i, -1)] for i in range(catalog_size)])
    _, found = examples.outputs(net, [examples.row_of[q] for q in queries])
    ranks = []
    for (crop, _), vector in zip(queries, found, strict=True):
        scores = gallery @ vector
        ranks.append(int((scores > scores[crop]).sum()))
    return {
        "recall@1": round(float(np.mean([r < 1 for r in ranks])), 4),
        "recall@10": round(float(np.mean([r < 10 for r in ranks])), 4),
    }


def train(
    net: Any,
    examples: Examples,
    images_of: list[list[int]],
    imagenet_features: np.ndarray,
    args: argparse.Namespace,
) -> None:
    import torch

    imagenet = torch.from_numpy(imagenet_features)
    tail = tail_parameters(net)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    for parameter in tail.values():
        parameter.requires_grad_(True)
    optimiser = torch.optim.Adam(list(tail.values()), lr=args.lr)
    steps = args.epochs * (len(images_of) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=args.lr, total_steps=steps, pct_start=0.1
    )
    rng = np.random.default_rng(0)
    net.eval()  # batch normalisation keeps ImageNet's statistics
    step = 0
    for epoch in range(args.epochs):
        started = time.perf_counter()
        for products, first, second in pairs(images_of, args.batch, rng):
            rows = np.concatenate([first, second])
            features, descriptor = tail_forward(net, *examples.tensors(rows))
            half = len(products)
            drift = 1 - (torch.nn.functional.normalize(features, dim=1) * imagenet[rows]).sum(1)
            loss = info_nce(descriptor[:half], descriptor[half:]) + args.keep_features * drift.mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if step % 20 == 0:
                logger.info("epoch %d step %d/%d loss %.3f", epoch + 1, step, steps, float(loss.detach()))
        logger.info("epoch %d took %.0f s", epoch + 1, time.perf_counter() - started)


def save(net: Any, output: Path, card: dict[str, Any]) -> None:
    save_weights(tail_parameters(net), output, card)


def save_weights(tensors: dict[str, Any], output: Path, card: dict[str, Any], **extra: np.ndarray) -> None:
    """The tensors in float16 (``extra`` arrays beside them, as they are) and the card, which gets
    their number of weights, beside them as .json."""
    weights = {name: t.detach().numpy().astype(np.float16) for name, t in tensors.items()}
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **extra, **weights)  # type: ignore[arg-type]
    card["weights"] = int(sum(w.size for w in weights.values()))
    output.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    logger.info("saved %s: %s", output, card)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crops", type=Path, required=True, help="the catalog crops (make eval's cache)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--network", choices=sorted(NETWORKS), default="efficientnet-lite0")
    parser.add_argument("--views", type=int, default=3, help="distorted views per training product")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="products per step (two images each)")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--keep-features", type=float, default=5.0, help="weight of the features' drift")
    parser.add_argument("--cache", type=Path, default=Path("data/cache"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.manual_seed(0)
    started = time.perf_counter()
    product_ids: list[str] = json.loads((args.crops / "manifest.json").read_text())
    held_out = [i for i, pid in enumerate(product_ids) if retrieval_held_out(pid)]
    trained = [i for i, pid in enumerate(product_ids) if not retrieval_held_out(pid)]
    rows = [(i, -1) for i in range(len(product_ids))]
    rows += [(i, v) for i in trained for v in range(args.views)] + [(i, 0) for i in held_out]
    net = pretrained(args.network).eval()
    examples = Examples(*cached_trunk_outputs(args.network, net, args.crops, rows, args.cache), rows)
    images_of = [[examples.row_of[(i, v)] for v in range(-1, args.views)] for i in trained]
    queries = [(i, 0) for i in held_out]
    before = view_recall(net, examples, len(product_ids), queries)
    logger.info("held-out views, ImageNet tail: %s", before)
    imagenet_features = examples.outputs(net, list(range(len(rows))))[0]
    train(net, examples, images_of, imagenet_features, args)
    after = view_recall(net, examples, len(product_ids), queries)
    unseen = [examples.row_of[image] for i in held_out for image in ((i, -1), (i, 0))]
    kept = float((examples.outputs(net, unseen)[0] * imagenet_features[unseen]).sum(1).mean())
    logger.info("held-out views, trained tail: %s; features' cosine to ImageNet's %.4f", after, kept)
    card = {
        "network": args.network,
        "trained_from_block": TAIL_FROM,
        "train_products": len(trained),
        "views_per_product": args.views,
        "epochs": args.epochs,
        "batch_products": args.batch,
        "lr": args.lr,
        "keep_features": args.keep_features,
        "held_out_views": len(queries),
        "held_out_descriptor": {"imagenet": before, "trained": after},
        "held_out_features_cosine_to_imagenet": round(kept, 4),
        "seconds": round(time.perf_counter() - started, 1),
    }
    save(net, args.output, card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
