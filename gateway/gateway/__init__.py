"""gateway: the public REST API of Shop The Look."""
