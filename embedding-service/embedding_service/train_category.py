"""Fine-tune a category tail (make train-category): the backbone's last blocks and head convolution
copied, with a softmax layer on their average-pooled, unit-length output, trained with cross-entropy
on the category, its targets smoothed by LABEL_SMOOTHING.

A linear head on ImageNet's features names the category of a shopper's photo (a garment laid on a
bed, hung on a door, held up) far worse than that of a catalog shot: jackets and shirts, dresses and
tops are told apart by what ImageNet's last blocks never had to learn. This tail learns it from:

- the catalog's crops and one distorted view of each training product (their category from the
  catalog), through the trunk's outputs cached as embedding_service.finetune caches them;
- the learnt shoppers' photos (tools/photo_features.py cuts them as queries are cut; the half of
  the contributors shared.splits.photo_held_out leaves to make eval is not even cut), each also
  AUGMENTATIONS times cropped, mirrored, turned and relit;
- optionally, SILHOUETTES_PER_CLASS of each Fashion-MNIST class drawn as a garment laid on a
  surface (embedding_service.silhouettes): the outlines of dresses, tops and coats the catalog has
  too few of.

Every batch holds CATALOG_BATCH catalog images, PHOTO_BATCH photos and SILHOUETTE_BATCH outlines,
each drawn with weights 1/sqrt(count of their category). The catalog's long tunics
(UNLEARNT_ARTICLE_TYPES) are not learnt from. One tail is trained for each of SOUP_SEEDS, and the
saved tail is their weights' mean.

The retrieval tail is left as it is: embedding_service.export makes this one a second graph taking
the backbone graph's trunk, which the service runs for the crops of products worn by no one and
reads instead of the linear head's category (the article types stay the head's). First, one fold of the learnt contributors
(train_head.contributor_folds, fold VALIDATION_FOLD) is kept out: the card gives its accuracy, and
for each of train_head.VOTE_WEIGHTS the accuracy once the catalog's nearest crops (by ImageNet's
features, as the index holds them) vote with the tail, as the gateway's vote does; then the tail is
trained again on every learnt photo and saved (float16) with its card.

    python -m embedding_service.train_category --crops data/cache/crops/<key> \
        --features data/cache/catalog-features.npz --photos data/cache/photo-crops-consumer \
        --output embedding_service/assets/category-tail.npz
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from embedding_service import finetune, silhouettes
from embedding_service.export import NETWORKS, pretrained
from embedding_service.preprocess import to_input
from embedding_service.train_head import VOTE_WEIGHTS, Examples, contributor_folds, held_out, neighbour_shares
from shared.splits import retrieval_held_out

logger = logging.getLogger("embedding-service")
NETWORK = "efficientnet-lite0"
STEPS = 150
CATALOG_BATCH = 96
PHOTO_BATCH = 32
SILHOUETTE_BATCH = 64
SILHOUETTES_PER_CLASS = 1500
LEARNING_RATE = 2e-4  # the tail's; the softmax layer's is LAYER_LEARNING_RATE
LAYER_LEARNING_RATE = 1e-2
AUGMENTATIONS = 8
# A tenth of each target spread over the other categories: a tail less sure of the catalog's cuts
# named more shoppers' shirts and hoodies tops rather than outerwear (make eval, README).
LABEL_SMOOTHING = 0.1
FEATURE_SCALE = 30.0  # as the linear head's: unit features have tiny components
VALIDATION_FOLD = 0
# Long tunics the catalog sells as topwear, cut like a straight dress: learnt as tops, they taught
# the tail that a dress laid flat or hung is a top. The tail does not learn from them; the catalog's
# vote (the gateway's) still names a store's own tunic photos by their nearest catalog products.
UNLEARNT_ARTICLE_TYPES = ("Kurtas", "Kurtis", "Tunics")
# One tail trained per seed (its softmax layer's start and its draws), averaged weight by weight:
# tails fine-tuned from the same network stay close enough that the mean of their weights names
# categories as their ensemble does, at one tail's size and cost.
SOUP_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Images:
    """Cached trunk outputs, each with its category's index (-1: none of ours), the catalog crop
    or photo it was made from, and whether it is that crop or photo itself (not a view of it)."""

    trunk: np.ndarray  # (N, C, H, W) float16
    labels: np.ndarray
    source: np.ndarray
    plain: np.ndarray

    def rows(self, mask: np.ndarray) -> np.ndarray:
        return np.flatnonzero(mask & (self.labels >= 0))


def category_module(net: Any, classes: int) -> Any:
    """The tail (the network's blocks from finetune.TAIL_FROM and head convolution, its own copy)
    and the softmax layer: trunk output -> category logits."""
    import copy

    import torch

    class CategoryTail(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(copy.deepcopy(net._blocks[finetune.TAIL_FROM :]))
            self.conv_head = copy.deepcopy(net._conv_head)
            self.bn1 = copy.deepcopy(net._bn1)
            self.swish = copy.deepcopy(net._swish)
            self.layer = torch.nn.Linear(self.conv_head.out_channels, classes)

        def pooled(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                x = block(x)
            return torch.nn.functional.normalize(self.swish(self.bn1(self.conv_head(x))).mean((2, 3)), dim=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(self.pooled(x) * FEATURE_SCALE)

    return CategoryTail()


def load_category(net: Any, path: Path) -> tuple[Any, list[str]]:
    """The category tail saved at ``path`` (``save``), built on ``net``'s blocks, and its labels."""
    import torch

    with np.load(path, allow_pickle=False) as data:
        labels = [str(label) for label in data["labels"]]
        weights = {
            key: torch.from_numpy(data[key].astype(np.float32)) for key in data.files if key != "labels"
        }
    model = category_module(net, len(labels))
    saved_blocks = {key.split(".")[1] for key in weights if key.startswith("blocks.")}
    if len(saved_blocks) != len(model.blocks):
        raise ValueError(
            f"{path} holds {len(saved_blocks)} trained blocks, but a tail is now the last "
            f"{len(model.blocks)} (finetune.TAIL_FROM): move it aside and run `make train-category`"
        )
    model.load_state_dict(weights)
    return model.eval(), labels


def augmented(image: Image.Image, rng: random.Random) -> Image.Image:
    """A shopper's photo as another shot of it might be: cropped by up to a quarter, mirrored,
    turned by up to 10 degrees, lit and coloured up to 25-30% otherwise."""
    width, height = image.size
    scale, aspect = rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.25)
    crop_w = min(width, int(width * scale * aspect**0.5))
    crop_h = min(height, int(height * scale / aspect**0.5))
    left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
    image = image.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.rotate(rng.uniform(-10, 10), Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.25))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.75, 1.25))
    return ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.3))


def photo_inputs(folder: Path, learnt: list[bool], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network inputs of each learnt photo's crop and of AUGMENTATIONS variants of it: (inputs, the
    photo of each, whether it is the photo itself). Photos make eval measures on are left out."""
    rng = random.Random(0)
    inputs, photos, plain = [], [], []
    for index, is_learnt in enumerate(learnt):
        if not is_learnt:
            continue
        image = Image.open(folder / f"{index}.jpg").convert("RGB")
        variants = [image] + [augmented(image, rng) for _ in range(AUGMENTATIONS)]
        for number, variant in enumerate(variants):
            inputs.append(to_input(np.asarray(variant), size))
            photos.append(index)
            plain.append(number == 0)
    return np.stack(inputs), np.array(photos), np.array(plain)


def trunk_of(net: Any, inputs: Iterable[np.ndarray], cache: Path) -> np.ndarray:
    """The trunk's outputs on prepared inputs (arrays of them, made as they are read, so that
    thousands need not be held at once), in onnxruntime (float16)."""
    import onnxruntime

    path = cache / "trunk-photos.onnx"
    cache.mkdir(parents=True, exist_ok=True)
    network = NETWORKS[NETWORK]
    finetune.export_trunk(
        finetune.trunk_module(net, network.descriptor_blocks).eval(), network.input_size, path
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parts = [
        session.run(["trunk"], {"image": part[start : start + 64]})[0].astype(np.float16)
        for part in inputs
        for start in range(0, len(part), 64)
    ]
    path.unlink()
    return np.concatenate(parts)


def catalog_images(
    net: Any, crops: Path, category_of: dict[str, str], index: dict[str, int], cache: Path
) -> tuple[Images, np.ndarray]:
    """Every catalog crop and one distorted view of each product make eval does not hold out; and
    the product id of each crop."""
    product_ids: list[str] = json.loads((crops / "manifest.json").read_text())
    wanted = [(i, -1) for i in range(len(product_ids))]
    wanted += [(i, 0) for i, pid in enumerate(product_ids) if not retrieval_held_out(pid)]
    trunk, _ = finetune.cached_trunk_outputs(NETWORK, net, crops, wanted, cache)
    labels = np.array([index.get(category_of.get(product_ids[i], ""), -1) for i, _ in wanted])
    sources = np.array([i for i, _ in wanted])
    return Images(trunk, labels, sources, np.array([v < 0 for _, v in wanted])), np.array(product_ids)


def learnt_catalog_rows(
    catalog: Images, product_ids: np.ndarray, article_of: dict[str, str], unlearnt: Iterable[str]
) -> np.ndarray:
    """The catalog images the tail learns from: those of a known category, of the products make
    eval does not hold out, whose article type is not one of ``unlearnt``."""
    articles = np.array([article_of.get(str(pid), "") for pid in product_ids])
    learnt = ~held_out(product_ids) & ~np.isin(articles, list(unlearnt))
    return catalog.rows(learnt[catalog.source])


def photo_images(
    net: Any, folder: Path, index: dict[str, int], cache: Path
) -> tuple[Images, np.ndarray, np.ndarray]:
    """The learnt photos' crops (tools/photo_features.py) and their augmented variants; with, per
    photo, whether it may be learnt from and its contributor fold."""
    labels = json.loads((folder / "labels.json").read_text())["photos"]
    learnt = np.array([bool(p["learnt"]) for p in labels])
    inputs, photos, plain = photo_inputs(folder, learnt.tolist(), NETWORKS[NETWORK].input_size)
    categories = np.array([index.get(p["category"], -1) for p in labels])
    groups = np.array([p["contributor"] or p["image"] for p in labels])
    folds = contributor_folds(Examples(np.zeros((len(labels), 1)), categories, learnt, groups))
    return Images(trunk_of(net, [inputs], cache), categories[photos], photos, plain), learnt, folds


def silhouette_images(net: Any, path: Path, index: dict[str, int], cache: Path) -> Images:
    """SILHOUETTES_PER_CLASS outlines of each Fashion-MNIST class (silhouettes.convert's file),
    each drawn once as a garment laid on a surface."""
    images, classes = silhouettes.sample(path, SILHOUETTES_PER_CLASS)
    size = NETWORKS[NETWORK].input_size
    rng = np.random.default_rng(0)

    def drawn() -> Iterator[np.ndarray]:
        for start in range(0, len(images), 256):
            yield np.stack(
                [to_input(silhouettes.render(i, rng, size), size) for i in images[start : start + 256]]
            )

    labels = silhouettes.category_labels(classes, index)
    rows = np.arange(len(images))
    return Images(trunk_of(net, drawn(), cache), labels, rows, np.ones(len(images), dtype=bool))


def class_weights(labels: np.ndarray, classes: int) -> np.ndarray:
    """Each row's chance to be drawn: 1/sqrt(count of its category), normalised."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    weights = 1.0 / np.sqrt(np.maximum(counts, 1.0))[labels]
    return np.asarray(weights / weights.sum())


def train(
    net: Any,
    classes: int,
    catalog: Images,
    catalog_rows: np.ndarray,
    photos: Images,
    photo_rows: np.ndarray,
    outlines: Images | None = None,
    seed: int = 0,
) -> Any:
    import torch

    torch.manual_seed(seed)
    model = category_module(net, classes).eval()  # batch normalisation keeps ImageNet's statistics
    tail = [p for name, p in model.named_parameters() if not name.startswith("layer.")]
    optimiser = torch.optim.Adam(
        [
            {"params": tail, "lr": LEARNING_RATE},
            {"params": model.layer.parameters(), "lr": LAYER_LEARNING_RATE},
        ]
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[LEARNING_RATE, LAYER_LEARNING_RATE], total_steps=STEPS, pct_start=0.1
    )
    rng = np.random.default_rng(seed)
    sources = [(catalog, catalog_rows, CATALOG_BATCH), (photos, photo_rows, PHOTO_BATCH)]
    if outlines is not None:
        sources.append((outlines, outlines.rows(np.ones(len(outlines.labels), dtype=bool)), SILHOUETTE_BATCH))
    chances = [class_weights(images.labels[rows], classes) for images, rows, _ in sources]
    for step in range(1, STEPS + 1):
        drawn = [
            (images, rng.choice(rows, batch, p=p))
            for (images, rows, batch), p in zip(sources, chances, strict=True)
        ]
        x = np.concatenate([images.trunk[rows] for images, rows in drawn]).astype(np.float32)
        y = np.concatenate([images.labels[rows] for images, rows in drawn])
        loss = torch.nn.functional.cross_entropy(
            model(torch.from_numpy(x)), torch.from_numpy(y), label_smoothing=LABEL_SMOOTHING
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 25 == 0:
            logger.info("step %d/%d loss %.3f", step, STEPS, float(loss.detach()))
    return model


def souped(models: list[Any]) -> Any:
    """A tail whose every weight is the mean of ``models``' (a uniform model soup); the first of
    them is overwritten and returned."""
    states = [model.state_dict() for model in models]
    mean = {
        key: sum(state[key] for state in states) / len(states) if value.is_floating_point() else value
        for key, value in states[0].items()
    }
    models[0].load_state_dict(mean)
    return models[0]


def probabilities(model: Any, trunk: np.ndarray) -> np.ndarray:
    import torch

    return _in_chunks(lambda x: torch.softmax(model(x), dim=1), trunk)


def imagenet_features(net: Any, trunk: np.ndarray) -> np.ndarray:
    """ImageNet's unit average-pooled features from trunk outputs (what the index's look vectors
    are, for the catalog's vote): an untrained copy of the network's tail computes them."""
    return _in_chunks(category_module(net, 1).eval().pooled, trunk).astype(np.float64)


def _in_chunks(function: Any, trunk: np.ndarray, size: int = 256) -> np.ndarray:
    """``function`` of the trunk outputs (float16), a chunk of ``size`` at a time, without grad."""
    import torch

    with torch.no_grad():
        parts = [
            function(torch.from_numpy(trunk[start : start + size].astype(np.float32))).numpy()
            for start in range(0, len(trunk), size)
        ]
    return np.concatenate(parts)


def validation(
    net: Any, model: Any, names: list[str], catalog: Images, photos: Images, rows: np.ndarray
) -> dict[str, object]:
    """Accuracy of the tail on ``rows`` (photos it did not learn), alone and with the catalog's
    nearest crops voting at each of VOTE_WEIGHTS."""
    index = {name: i for i, name in enumerate(names)}
    crops = np.flatnonzero(catalog.plain & (catalog.labels >= 0))
    gallery = Examples(
        imagenet_features(net, catalog.trunk[crops]),
        np.array([names[i] for i in catalog.labels[crops]]),
        np.ones(len(crops), dtype=bool),
    )
    shares = neighbour_shares(imagenet_features(net, photos.trunk[rows]), gallery, index)
    p = probabilities(model, photos.trunk[rows])
    truth = photos.labels[rows]
    voted = {str(w): round(float(((p + w * shares).argmax(1) == truth).mean()), 4) for w in VOTE_WEIGHTS}
    return {"photos": len(rows), "accuracy": voted["0.0"], "vote_weights": voted}


def learnt_photos(folder: Path, learnt: np.ndarray) -> dict[str, object]:
    """What the card says of the photos: their folder, how many, and the images learnt from (which
    make eval leaves out)."""
    labels = json.loads((folder / "labels.json").read_text())
    return {
        "folder": labels["folder"],
        "learnt_from": int(learnt.sum()),
        "held_out": int((~learnt).sum()),
        "images": [p["image"] for p, is_learnt in zip(labels["photos"], learnt, strict=True) if is_learnt],
    }


def outlines_card(outlines: Images | None) -> dict[str, object] | None:
    """What the card says of the Fashion-MNIST outlines learnt from (None: none were)."""
    if outlines is None:
        return None
    return {
        "source": silhouettes.SOURCE,
        "per_class": SILHOUETTES_PER_CLASS,
        "images": int((outlines.labels >= 0).sum()),
        "batch": SILHOUETTE_BATCH,
    }


def save(model: Any, names: list[str], output: Path, card: dict[str, Any]) -> None:
    finetune.save_weights(model.state_dict(), output, card, labels=np.array(names))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crops", type=Path, required=True, help="the catalog crops (make eval's cache)")
    parser.add_argument(
        "--features", type=Path, required=True, help="tools/catalog_features.py's (categories)"
    )
    parser.add_argument("--photos", type=Path, required=True, help="photo crops (tools/photo_features.py)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--silhouettes", type=Path, help="Fashion-MNIST (embedding_service.silhouettes's file); optional"
    )
    parser.add_argument("--cache", type=Path, default=Path("data/cache"))
    parser.add_argument(
        "--unlearnt-article-types",
        default=",".join(UNLEARNT_ARTICLE_TYPES),
        help="catalog article types the tail does not learn from (comma-separated; empty: none)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.perf_counter()
    net = pretrained(NETWORK).eval()
    data = np.load(args.features, allow_pickle=False)
    learnable = data["categories"][(data["categories"] != "") & ~held_out(data["product_ids"])]
    names = sorted({str(c) for c in learnable})
    index = {name: i for i, name in enumerate(names)}
    category_of = {str(p): str(c) for p, c in zip(data["product_ids"], data["categories"], strict=True)}
    article_of = {str(p): str(a) for p, a in zip(data["product_ids"], data["article_types"], strict=True)}
    unlearnt = [a for a in args.unlearnt_article_types.split(",") if a]
    catalog, product_ids = catalog_images(net, args.crops, category_of, index, args.cache)
    photos, learnt, folds = photo_images(net, args.photos, index, args.cache)
    outlines = silhouette_images(net, args.silhouettes, index, args.cache) if args.silhouettes else None
    catalog_rows = learnt_catalog_rows(catalog, product_ids, article_of, unlearnt)
    kept_out = learnt & (folds == VALIDATION_FOLD)

    def trained_soup(photo_rows: np.ndarray) -> Any:
        tails: list[Any] = []
        for seed in SOUP_SEEDS:
            logger.info("tail %d of %d (seed %d)", len(tails) + 1, len(SOUP_SEEDS), seed)
            tails.append(train(net, len(names), catalog, catalog_rows, photos, photo_rows, outlines, seed))
        return souped(tails)

    model = trained_soup(photos.rows(learnt[photos.source] & ~kept_out[photos.source]))
    checked = validation(
        net, model, names, catalog, photos, photos.rows(kept_out[photos.source] & photos.plain)
    )
    logger.info("learnt contributors' fold %d kept out: %s", VALIDATION_FOLD, checked)
    model = trained_soup(photos.rows(learnt[photos.source]))
    card = {
        "network": NETWORK,
        "trained_from_block": finetune.TAIL_FROM,
        "labels": names,
        "steps": STEPS,
        "soup_seeds": list(SOUP_SEEDS),
        "catalog_batch": CATALOG_BATCH,
        "photo_batch": PHOTO_BATCH,
        "learning_rates": [LEARNING_RATE, LAYER_LEARNING_RATE],
        "label_smoothing": LABEL_SMOOTHING,
        "augmentations": AUGMENTATIONS,
        "catalog_images": len(catalog_rows),
        "unlearnt_article_types": unlearnt,
        "photos": learnt_photos(args.photos, learnt),
        "silhouettes": outlines_card(outlines),
        "validation_fold": {"fold": VALIDATION_FOLD, **checked},
        "seconds": round(time.perf_counter() - started, 1),
    }
    save(model, names, args.output, card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
