"""TensorFlow Lite models: FaceRes converted once from its TF.js graph and the face detectors taken
out of the mediapipe wheel (``make models``), run with one interpreter per thread (an interpreter
is not thread-safe; each is cheap)."""

from __future__ import annotations

import argparse
import logging
import threading
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gender_service.tfjs import ModelFileError, load_graph_model

logger = logging.getLogger("gender-service")

FACE_DETECTOR_FILE = "face_detection_full_range.tflite"  # whole photos
HEAD_DETECTOR_FILE = "face_detection_short_range.tflite"  # crops around one head
MEDIAPIPE_FACE_DETECTORS = {  # file in the model folder: member of the mediapipe wheel
    FACE_DETECTOR_FILE: "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
    HEAD_DETECTOR_FILE: "mediapipe/modules/face_detection/face_detection_short_range.tflite",
}
# (TF.js graph, its input, the outputs we use): converted to <name>.tflite beside the graph
CONVERSIONS = {
    "faceres": ("input_1:0", ("gender_pred/Sigmoid:0",)),
}


def convert(json_path: Path, input_name: str, outputs: Sequence[str]) -> bytes:
    """A TF.js graph model as a TensorFlow Lite flatbuffer (float32; fused TF.js ops spelled out)."""
    import tensorflow as tf

    function = load_graph_model(json_path, [input_name], list(outputs))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], function)
    return bytes(converter.convert())


class TFLiteModel:
    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = path
        self.threads = threads
        self._content: bytes | None = None
        self._local = threading.local()

    def load(self) -> None:
        if not self.path.exists():
            raise ModelFileError(f"{self.path} is missing: run `make models`")
        self._content = self.path.read_bytes()
        self._interpreter()  # fail here, not in a request, if the file is broken

    def _interpreter(self) -> tuple[Any, int, list[int]]:
        """This thread's interpreter, with its input and output tensor indices (asking the
        interpreter for them builds their whole descriptions, each time)."""
        bound = getattr(self._local, "bound", None)
        if bound is None:
            import tensorflow as tf

            if self._content is None:
                raise RuntimeError(f"{self.path.name} is not loaded")
            with warnings.catch_warnings():  # "use ai_edge_litert": TensorFlow's own still works here
                warnings.simplefilter("ignore", UserWarning)
                interpreter = tf.lite.Interpreter(model_content=self._content, num_threads=self.threads)
            interpreter.allocate_tensors()
            outputs = [o["index"] for o in interpreter.get_output_details()]
            bound = (interpreter, interpreter.get_input_details()[0]["index"], outputs)
            self._local.bound = bound
        return bound  # type: ignore[no-any-return]

    def input_shape(self) -> tuple[int, ...]:
        interpreter, _, _ = self._interpreter()
        return tuple(int(side) for side in interpreter.get_input_details()[0]["shape"])

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for a (1, ...) input, in the interpreter's output order."""
        interpreter, input_index, output_indices = self._interpreter()
        interpreter.set_tensor(input_index, batch.astype(np.float32))
        interpreter.invoke()
        return [np.array(interpreter.get_tensor(index)) for index in output_indices]


def extract_face_detectors(wheel: Path, model_dir: Path) -> None:
    """MediaPipe's face detectors, copied out of its PyPI wheel (nothing else of it is needed)."""
    with zipfile.ZipFile(wheel) as archive:
        for target, member in MEDIAPIPE_FACE_DETECTORS.items():
            (model_dir / target).write_bytes(archive.read(member))
            logger.info("extracted %s from %s", target, wheel.name)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Convert the TF.js face model to TensorFlow Lite, or take the face detectors out of "
        "the mediapipe wheel"
    )
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--mediapipe-wheel", type=Path, help="extract the face detectors from this wheel")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.mediapipe_wheel:
        extract_face_detectors(args.mediapipe_wheel, args.model_dir)
        return 0
    for name, (input_name, outputs) in CONVERSIONS.items():
        target = args.model_dir / f"{name}.tflite"
        target.write_bytes(convert(args.model_dir / f"{name}.json", input_name, outputs))
        logger.info("converted %s (%d bytes)", target, target.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
