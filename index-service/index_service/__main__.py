"""Run the service: python -m index_service"""

from index_service.config import Settings
from shared.service import serve

if __name__ == "__main__":
    settings = Settings()
    serve("index_service.main:app", settings)
