"""The Flask application factory: shared state, each feature's blueprints, JSON errors, access log."""

from __future__ import annotations

from flask import Flask

from exporter import logsafe, meta
from exporter.badges import routes as badges
from exporter.dora import routes as incidents
from exporter.forwarding import routes as deliveries
from exporter.forwarding.routing import router
from exporter.ingest import resources
from exporter.ingest import routes as ingest
from exporter.ingest.fast import FastIngest
from exporter.metrics import routes as metrics
from exporter.metrics.collector import build_registry
from exporter.receivers import routes as receivers
from exporter.settings import Settings
from exporter.ui import routes as ui
from exporter.web import access, errors
from exporter.web.fastjson import OrjsonProvider
from exporter.web.params import refuse_nul
from exporter.web.state import AppState, rollback_request_db

BLUEPRINTS = (
    ui.bp,
    meta.bp,
    metrics.bp,
    ingest.bp,
    resources.bp,
    deliveries.bp,
    badges.bp,
    receivers.bp,
    incidents.bp,
)
# The JSON API's blueprints (every operation documents 400): a NUL in the URL stops there. The
# status page, badges, /metrics and /healthz check their own inputs and never query with one.
for _bp in (ingest.bp, resources.bp, deliveries.bp, receivers.bp, incidents.bp):
    _bp.before_request(refuse_nul)


def create_app(settings: Settings, *, process_metrics: bool = True) -> Flask:
    app = Flask(__name__)
    app.json = OrjsonProvider(app)  # key order kept, UTF-8 out, several times the stdlib's speed
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["releasebits"] = shared = AppState(
        settings=settings,
        registry=build_registry(settings, process_metrics=process_metrics),
        router=router(settings.forward_targets),
    )
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    errors.install(app, settings.max_body_bytes)
    access.install(app)
    logsafe.lean_records()  # also in Granian's workers, whose logging Granian configures
    app.teardown_request(rollback_request_db)
    # The common JSON POST of an event skips Flask's request machinery (same answers).
    app.wsgi_app = FastIngest(app.wsgi_app, shared)  # type: ignore[method-assign]
    return app
