"""Run the service: python -m gateway"""

from gateway.config import Settings
from shared.service import serve

if __name__ == "__main__":
    serve("gateway.main:app", Settings())
