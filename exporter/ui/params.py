"""The status page's query parameters, declared for the routes and the OpenAPI document."""

from __future__ import annotations

from exporter.names import RESULT_CLASSES
from exporter.web.params import Param, enum

KINDS = ("deployment", "build")

COMPONENT = Param("component", description="Only this component (its slug).")
STAGE = Param("stage", description="Only this stage (deployments; builds have no stage).")
RESULT = Param("result", enum(*RESULT_CLASSES), "Only this result class.")
KIND = Param("kind", enum(*KINDS), "Only deployments or only builds.")
CURSOR = Param("cursor", description="From the 'Older' link of the previous page.")
NEXT = Param("next", description="Where to go after signing in (a path on this server).")

STATUS_PARAMS = (COMPONENT, STAGE, RESULT, KIND, CURSOR)
COMPONENT_PARAMS = (STAGE, RESULT, KIND, CURSOR)
