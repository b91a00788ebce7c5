"""The prediction APIs over REST: TensorFlow Serving's (`tfserving`, `/v1`) and the Open
Inference Protocol's (`v2`, `/v2`). Each holds only its wire format; the work is the data
plane's."""
from __future__ import annotations

from flask import Flask

from hub.auth import Access

from ..dataplane import DataPlane
from .common import EXTENSION, ServingContext
from .tfserving import v1
from .v2 import v2


def init_app(app: Flask, dataplane: DataPlane, access: Access) -> None:
    app.extensions[EXTENSION] = ServingContext(dataplane, access)
    app.register_blueprint(v1)
    app.register_blueprint(v2)
