"""The app in this process: settings that ignore this machine's environment, and the hub
called through Flask's test client."""
from __future__ import annotations

from .processes import make_tokens


def app_settings(store: str, **settings):
    """Settings for an app under test: nothing from this machine's environment."""
    from schemas.settings import load_settings

    return load_settings({"store": store, **settings}, environ={})


class InProcessHub:
    """The hub app in this process, called through Flask's test client, and its tokens."""

    def __init__(self, store: str, **settings):
        from modelhub.app import create_app

        self.store = store
        self.tokens = make_tokens(store)
        self.app = create_app(app_settings(store, role="hub", **settings))
        self.client = self.app.test_client()

    def auth(self, scope: str | None) -> dict:
        return {"Authorization": f"Bearer {self.tokens[scope]}"} if scope else {}
