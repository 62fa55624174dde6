"""index-service: filtered nearest-neighbour search over product embeddings (Qdrant Edge, in-process)."""
