"""Run the service: python -m detector_service"""

from detector_service.config import Settings
from shared.service import serve

if __name__ == "__main__":
    settings = Settings()
    serve("detector_service.main:app", settings)
