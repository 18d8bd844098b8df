"""HTTP layer: ``create_app(settings)``. Never imports torch."""

from pixgen.api.app import create_app

__all__ = ["create_app"]
