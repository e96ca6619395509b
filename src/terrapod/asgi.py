"""ASGI entry point for multi-worker serving: settings come from the environment."""

from terrapod.app import create_app
from terrapod.config import Settings

app = create_app(Settings())
