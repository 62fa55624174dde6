"""Run the service: python -m embedding_service"""

from embedding_service.config import Settings
from shared.service import serve

if __name__ == "__main__":
    serve("embedding_service.main:app", Settings())
