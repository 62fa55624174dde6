"""Float16 and int8 exports of the ONNX backbone, for make eval to weigh speed against accuracy.

- float16: weights and activations in half precision (inputs and outputs stay float32);
- int8: static quantisation (QDQ, per-channel weights), calibrated on catalog crops, with 7-bit
  weights (``reduce_range``) and the stem and head convolutions kept in float. x86 CPUs without
  VNNI (AVX2 only, as this machine) multiply uint8 by int8 with VPMADDUBSW, whose int16 sums
  saturate with 8-bit weights: the full-range export's vectors were 0.91 cosine from the float
  ones on catalog crops (worst 0.58), this one's 0.98 (worst 0.93), about 1.5x faster than float.

    python -m embedding_service.quantise --backbone models/embedding/efficientnet_lite0.onnx \
        --calibration data/cache/crops/<key> --count 200
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from embedding_service.head import unit_rows
from embedding_service.model import backbone_facts, category_graph_path
from embedding_service.preprocess import to_batch

logger = logging.getLogger("embedding-service")


def export_float16(backbone: Path, output: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(backbone)), keep_io_types=True)
    onnx.save(model, str(output))
    copy_metadata(backbone, output)


class CropReader:
    """Calibration batches for onnxruntime's static quantisation."""

    def __init__(self, crops: list[Path], size: int, batch: int = 8) -> None:
        self._batches: Iterator[np.ndarray] = (
            to_batch([np.asarray(Image.open(p).convert("RGB")) for p in crops[i : i + batch]], size)
            for i in range(0, len(crops), batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"image": batch}


def float_convolutions(model: Path) -> list[str]:
    """The first and last convolutions (the stem, on raw pixels, and the head, whose outputs are
    pooled into the vectors): the two where int8 costs the most accuracy for the least time."""
    import onnx

    convolutions = [node.name for node in onnx.load(str(model)).graph.node if node.op_type == "Conv"]
    return [convolutions[0], convolutions[-1]]


def export_int8(backbone: Path, output: Path, crops: list[Path]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = output.with_suffix(".prep.onnx")
    quant_pre_process(str(backbone), str(prepared))
    reader = CropReader(crops, backbone_facts(session_of(backbone))[1])
    CalibrationDataReader.register(CropReader)
    quantize_static(
        str(prepared),
        str(output),
        reader,  # type: ignore[arg-type]
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=float_convolutions(prepared),
    )
    prepared.unlink(missing_ok=True)
    copy_metadata(backbone, output)


def copy_metadata(source: Path, target: Path) -> None:
    """The source graph's metadata (which network it is) onto an export made from it, and its
    category graph (if any, kept in float: it runs on product photos' crops alone) beside it."""
    import onnx

    model = onnx.load(str(target))
    del model.metadata_props[:]
    model.metadata_props.extend(onnx.load(str(source)).metadata_props)
    onnx.save(model, str(target))
    category = category_graph_path(source)
    if category.exists():
        shutil.copyfile(category, category_graph_path(target))


def session_of(path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def speed(path: Path, batch: int, rounds: int = 5) -> float:
    """Milliseconds per crop in batches of ``batch`` (two threads, as the service runs)."""
    session = session_of(path)
    side = backbone_facts(session)[1]
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, side, side)).astype(np.float32)
    session.run(None, {"image": x})
    started = time.perf_counter()
    for _ in range(rounds):
        session.run(None, {"image": x})
    return round((time.perf_counter() - started) * 1000 / rounds / batch, 2)


def agreement(backbone: Path, export: Path, crops: list[Path]) -> dict[str, tuple[float, float]]:
    """Per output, the mean and worst cosine between the float backbone's vectors of ``crops`` and
    the export's: how far the export moves what the index compares."""
    reference_session = session_of(backbone)
    side = backbone_facts(reference_session)[1]
    batch = to_batch([np.asarray(Image.open(p).convert("RGB")) for p in crops], side)
    names = [output.name for output in reference_session.get_outputs()]
    reference = reference_session.run(names, {"image": batch})
    exported = session_of(export).run(names, {"image": batch})
    result = {}
    for name, a, b in zip(names, reference, exported, strict=True):
        cosines = (unit_rows(a) * unit_rows(b)).sum(axis=1)
        result[name] = (round(float(cosines.mean()), 4), round(float(cosines.min()), 4))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", type=Path, required=True)
    parser.add_argument("--calibration", type=Path, required=True, help="folder of catalog crops (.jpg)")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    every = sorted(args.calibration.glob("*.jpg"))
    crops = every[:: max(1, len(every) // args.count)]
    checked = every[max(1, len(every) // args.count) // 2 :: max(1, len(every) // 64)][:64]
    fp16 = args.backbone.with_suffix(".fp16.onnx")
    int8 = args.backbone.with_suffix(".int8.onnx")
    export_float16(args.backbone, fp16)
    export_int8(args.backbone, int8, crops[: args.count])
    for path in (args.backbone, fp16, int8):
        logger.info(
            "%s: %.1f MB, %.2f ms/crop alone, %.2f ms/crop in batches of 32",
            path.name,
            path.stat().st_size / 1e6,
            speed(path, 1),
            speed(path, 32),
        )
    for path in (fp16, int8):
        logger.info(
            "%s against the float backbone on %d other crops (cosine mean, worst): %s",
            path.name,
            len(checked),
            agreement(args.backbone, path, checked),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
