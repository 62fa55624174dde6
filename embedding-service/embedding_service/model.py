"""EfficientNet-Lite features through onnxruntime, the classifier head and the colour namer."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from embedding_service.config import Settings
from embedding_service.head import ClassifierHead, Projection, TailCategories, unit_rows
from embedding_service.preprocess import LEGACY_INPUT_SIZE, to_batch
from shared.calibration import card_threshold
from shared.colours import NEIGHBOURS_ASSET, crop_colour
from shared.contracts import CropEmbedding
from shared.features import file_digest

logger = logging.getLogger("embedding-service")
LEGACY_BACKBONE_NAME = "efficientnet-lite2-imagenet"  # of an export that does not name its network
# with a category tail (export --category-tail): the backbone graph's input of the last blocks, and
# the output of the category graph beside it that takes it (labels in the backbone's metadata)
TRUNK_OUTPUT = "trunk"
CATEGORY_OUTPUT = "category"


def json_floats(values: np.ndarray) -> list[float]:
    """Six decimals, as short in JSON as they look (float64: a float32 would print its binary
    expansion); several times faster than round() per value."""
    rounded: list[float] = np.round(values.astype(np.float64), 6).tolist()
    return rounded


def backbone_facts(session: Any) -> tuple[str, int]:
    """The network an export holds (embedding_service.export writes its name into the graph's
    metadata) and the side of the square image it takes."""
    name = session.get_modelmeta().custom_metadata_map.get("backbone", LEGACY_BACKBONE_NAME)
    side = session.get_inputs()[0].shape[-1]
    return name, side if isinstance(side, int) else LEGACY_INPUT_SIZE


def category_graph_path(backbone: Path) -> Path:
    """Where the export puts the category graph of the backbone graph at ``backbone``."""
    return backbone.with_name(f"{backbone.stem}.category.onnx")


def category_labels(session: Any) -> list[str]:
    """The categories of the category graph (a category tail, make train-category), in its
    output's order; none when the backbone graph has no category graph."""
    if TRUNK_OUTPUT not in [output.name for output in session.get_outputs()]:
        return []
    labels = session.get_modelmeta().custom_metadata_map["category_labels"]
    return [str(label) for label in json.loads(labels)]


def vector_model_name(backbone: Path, projection: Path | None, instance: Path | None = None) -> str:
    """What makes the retrieval and instance vectors, down to the weights: vectors are comparable
    only between equal names (a re-exported backbone or a refitted projection gets a new one)."""
    name = f"{backbone.stem}@{file_digest(backbone)}"
    if projection:
        name += f"+projection@{file_digest(projection)}"
    if instance:
        name += f"+instance@{file_digest(instance)}"
    return name


def item_model_name(vector_model: str, head: Path | None, category_graph: Path | None) -> str:
    """What makes a crop's whole item: the vectors (``vector_model``), its categories and article
    types (the classifier head, the category tail's graph) and its colour (the colour table), each
    named by its weights' digest, so that a retrained head or tail is not taken from a cache."""
    name = vector_model
    if head:
        name += f"+classifier@{file_digest(head)}"
    if category_graph:
        name += f"+category@{file_digest(category_graph)}"
    if NEIGHBOURS_ASSET.exists():
        name += f"+colours@{file_digest(NEIGHBOURS_ASSET)}"
    return name


def checked_projection(path: Path, outputs: dict[str, np.ndarray], backbone: Path) -> Projection:
    """The projection at ``path``, refused unless the backbone gives what it reads."""
    projection = Projection.load(path)
    missing = [name for name in projection.sources if name not in outputs]
    if missing:
        raise ValueError(
            f"projection {path} reads the backbone's {missing[0]!r}, which "
            f"{backbone} does not give: run `make models` to export it again"
        )
    given = projection.input_of(outputs).shape[1]
    if projection.input_dim != given:
        raise ValueError(
            f"projection {path} takes {projection.input_dim} values, "
            f"the backbone's {projection.source!r} has {given}"
        )
    return projection


class EmbeddingModel:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: object | None = None
        self._category: object | None = None  # the category graph, with a category tail
        self._output_names: list[str] = []
        self.head: ClassifierHead | None = None
        self.projection: Projection | None = None
        self.instance: Projection | None = None  # makes the instance vectors, when served
        self.exact_match: float | None = None  # the instance projection's calibration (its card)
        self.dim = 0
        self.vector_model = ""
        self.item_model = ""  # vector_model and what else makes an item (item_model_name)
        self.backbone = LEGACY_BACKBONE_NAME
        self.input_size = LEGACY_INPUT_SIZE
        self.category_labels: list[str] = []  # of the category graph, when there is one
        # colours are named while onnxruntime runs, whose two threads leave a core half idle on a
        # small batch (in-process, per crop with colours: one crop 13.3 -> 11.3 ms, five 10.4 -> 9.1)
        self._colourist = ThreadPoolExecutor(1, thread_name_prefix="colours")

    @property
    def instance_dim(self) -> int | None:
        return self.instance.dim if self.instance else None

    @property
    def name(self) -> str:
        parts = [self.settings.backbone_path.stem]
        if self.projection:
            parts.append(f"projection-{self.projection.dim}")
        if self.instance:
            parts.append(f"instance-{self.instance.dim}")
        if self.head:
            parts.append("classifier")
        if self.category_labels:
            parts.append("category-tail")
        return "+".join(parts)

    def load(self) -> None:
        import onnxruntime

        path = self.settings.backbone_path
        if not path.exists():
            raise FileNotFoundError(f"backbone {path} is missing: run `make models`")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.settings.onnx_threads
        options.inter_op_num_threads = 1
        # onnxruntime's threads otherwise spin for a while after each run, starving the numpy work
        # that follows (head, projection, colour)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._session = session
        self._output_names = [
            output.name
            for output in session.get_outputs()
            if output.name not in (TRUNK_OUTPUT, CATEGORY_OUTPUT)  # the latter: of an older export
        ]
        self.backbone, self.input_size = backbone_facts(session)
        self.category_labels = category_labels(session)
        if self.category_labels:
            graph = category_graph_path(path)
            if not graph.exists():
                raise FileNotFoundError(f"category graph {graph} is missing: run `make models`")
            self._category = onnxruntime.InferenceSession(
                str(graph), options, providers=["CPUExecutionProvider"]
            )
        outputs = self._run(np.zeros((1, 3, self.input_size, self.input_size), np.float32), trunk=False)
        backbone_dim = int(outputs["features"].shape[1])
        self.dim = backbone_dim
        projection, instance = self.settings.projection_path(), self.settings.instance_path()
        if projection is not None:
            self.projection = checked_projection(projection, outputs, path)
            self.dim = self.projection.dim
        if instance is not None:
            self.instance = checked_projection(instance, outputs, path)
            self.exact_match = card_threshold(instance)
        self.vector_model = vector_model_name(path, projection, instance)
        if self.settings.head_path.exists():
            self.head = ClassifierHead.load(self.settings.head_path)
            if self.head.category.weights.shape[0] != backbone_dim or self.head.backbone != self.backbone:
                raise ValueError(
                    f"head {self.settings.head_path} was trained on {self.head.backbone}, "
                    f"the backbone is {self.backbone}: run `make train-classifier`"
                )
        else:
            logger.warning(
                "no classifier head; crops get no category", extra={"path": str(self.settings.head_path)}
            )
        self.item_model = item_model_name(
            self.vector_model,
            self.settings.head_path if self.head else None,
            category_graph_path(path) if self._category is not None else None,
        )

    def _run(self, batch: np.ndarray, trunk: bool) -> dict[str, np.ndarray]:
        """The backbone's outputs by name (export.OUTPUTS; an older export gives "features" only),
        with ``trunk`` also TRUNK_OUTPUT."""
        assert self._session is not None, "load() first"
        session: Any = self._session
        names = [*self._output_names, *([TRUNK_OUTPUT] if trunk else [])]
        return {
            name: np.asarray(value, dtype=np.float32)
            for name, value in zip(names, session.run(names, {"image": batch}), strict=True)
        }

    def embed_outputs(self, crops: list[np.ndarray], tail_rows: Sequence[int] = ()) -> dict[str, np.ndarray]:
        """Each backbone output for the crops, (N, D) and L2-normalised, computed in batches of at
        most max_batch; with a category tail, its probabilities (as they are) for the crops
        ``tail_rows`` only (in ascending order): the category graph runs on their trunks alone."""
        asked = sorted(set(tail_rows)) if self._category is not None else []
        parts: dict[str, list[np.ndarray]] = {}
        trunks = []
        for start in range(0, len(crops), self.settings.max_batch):
            batch = to_batch(crops[start : start + self.settings.max_batch], self.input_size)
            wanted = [row - start for row in asked if start <= row < start + len(batch)]
            outputs = self._run(batch, trunk=bool(wanted))
            if wanted:
                trunks.append(outputs.pop(TRUNK_OUTPUT)[wanted])
            for name, value in outputs.items():
                parts.setdefault(name, []).append(value)
        joined = {name: unit_rows(np.concatenate(values)) for name, values in parts.items()}
        if trunks:
            joined[CATEGORY_OUTPUT] = self._categories(np.concatenate(trunks))
        return joined

    def _categories(self, trunks: np.ndarray) -> np.ndarray:
        session: Any = self._category
        return np.asarray(session.run([CATEGORY_OUTPUT], {TRUNK_OUTPUT: trunks})[0], dtype=np.float32)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, 1280) L2-normalised average-pooled features."""
        return self.embed_outputs(crops)["features"]

    def predict(
        self,
        crops: list[np.ndarray],
        colours: bool = True,
        instances: bool = True,
        products: Sequence[int] = (),
    ) -> list[CropEmbedding]:
        """Vector, instance vector (with ``instances``, when served), classes and (with ``colours``)
        the dominant colour of each crop. ``products``: the crops that show a product on its own
        (not worn), whose category the category tail names when the service has one."""
        named = self._colourist.submit(lambda: [crop_colour(crop) for crop in crops]) if colours else None
        rows = sorted(set(products))
        outputs = self.embed_outputs(crops, rows)
        features = outputs["features"]
        tail = (
            TailCategories(rows, outputs[CATEGORY_OUTPUT], self.category_labels)
            if CATEGORY_OUTPUT in outputs
            else None
        )
        classes = self.head.classify(features, tail) if self.head else [({}, [])] * len(crops)
        vectors = self.projection.apply(self.projection.input_of(outputs)) if self.projection else features
        made = (
            self.instance.apply(self.instance.input_of(outputs))
            if self.instance and instances
            else [None] * len(crops)
        )
        results = []
        names: list[tuple[str | None, float | None]] = (
            named.result() if named else [(None, None)] * len(crops)
        )
        for vector, instance, feature, (categories, articles), (colour, share) in zip(
            vectors, made, features, classes, names, strict=True
        ):
            results.append(
                CropEmbedding(
                    vector=json_floats(vector),
                    instance=json_floats(instance) if instance is not None else None,
                    backbone=json_floats(feature) if self.projection else None,
                    category_scores=categories,
                    article_types=articles,
                    colour=colour,
                    colour_score=share,
                )
            )
        return results
