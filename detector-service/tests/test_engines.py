"""Which interpreters a request gets: the multi-threaded pair alone, single-threaded ones together."""

from __future__ import annotations

import threading

from detector_service.config import Settings
from detector_service.model import DetectorModel
from shared.images import decode_image
from tests.conftest import dev_photo


def test_a_request_alone_gets_the_threaded_pair_and_concurrent_ones_single_threaded_pairs() -> None:
    model = DetectorModel(Settings(inference_threads=2, model_threads=2))
    model.load()
    with model._checkout() as first:
        assert first is model._alone
        with model._checkout() as second, model._checkout() as third:
            assert second is not model._alone and third is not model._alone
            assert second is not third
    with model._checkout() as again:
        assert again is model._alone  # released, and alone again


def test_one_model_thread_needs_no_threaded_pair() -> None:
    model = DetectorModel(Settings(inference_threads=1, model_threads=1))
    model.load()
    assert model._alone is None
    with model._checkout() as engines:
        assert engines is not None


def test_concurrent_predictions_agree_with_a_lone_one() -> None:
    model = DetectorModel(Settings(inference_threads=2, model_threads=2))
    model.load()
    image = decode_image(dev_photo("ootd_model_model_8.png"))
    alone = model.predict(image)
    assert alone.persons
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(model.predict(image))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(answer == alone for answer in answers)
