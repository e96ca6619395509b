"""ASGI entry point for multi-worker serving: settings come from the environment."""

from terrapod.app import create_app
from terrapod.config import Settings
from terrapod.observability.logging import configure_logging

settings = Settings()
configure_logging(settings.log_level, settings.log_format)
app = create_app(settings, tune_gc=True)
