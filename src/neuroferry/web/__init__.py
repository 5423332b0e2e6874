"""The web service: REST API and pages."""

from neuroferry.web.app import create_app

__all__ = ["create_app"]
