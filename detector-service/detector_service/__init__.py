"""detector-service: persons, faces and garment regions from MediaPipe pose and the person mask."""
