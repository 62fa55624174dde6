"""Run the service: python -m embedding_service"""

import os

# numpy's BLAS (the head and the projection) gets one thread, set before numpy loads: onnxruntime's
# threads do the heavy work, and two BLAS threads spinning beside them made a request of five crops
# with the projection ~40 ms slower
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from embedding_service.config import Settings
from shared.service import serve

if __name__ == "__main__":
    serve("embedding_service.main:app", Settings())
