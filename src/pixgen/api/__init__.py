"""HTTP layer: ``create_app(settings)`` and the pieces other surfaces plug in with. Never imports torch."""

from pixgen.api.app import create_app
from pixgen.api.surface import Surface

__all__ = ["Surface", "create_app"]
