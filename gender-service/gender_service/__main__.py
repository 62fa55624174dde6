"""Run the service: python -m gender_service"""

from gender_service.config import Settings
from shared.service import serve

if __name__ == "__main__":
    settings = Settings()
    serve("gender_service.main:app", settings)
