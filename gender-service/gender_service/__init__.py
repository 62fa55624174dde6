"""gender-service: faces (MediaPipe's full-range BlazeFace) and the gender of each (FaceRes)."""
