"""gender-service: faces (BlazeFace) and the gender of each face (FaceRes)."""
