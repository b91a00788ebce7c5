"""modelhub's composition root: the layer above `hub` and `serving` that assembles them.

`app.create_app(settings)` builds the web application for a role, `cli.main` is the `modelhub`
command (the hub's commands plus `serve`), `server` runs the app under gunicorn, and `health`
answers liveness and readiness. Nothing below this package imports it.
"""
