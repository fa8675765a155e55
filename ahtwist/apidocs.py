"""The OpenAPI document and its Swagger UI page, as Klein routes.

The document is encoded once, when this app is made at start-up; a request
only writes the stored bytes.  The Swagger UI assets come from the installed
``swagger-ui-py`` package, which ships them as package data (its Python side
is for other frameworks and is never imported here); nothing is loaded from a
CDN.  The Klein app serving them is made by :meth:`APIDocs.klein_app`, on the
first request (:class:`ahtwist.web.mounts.LazyResource`): Klein is imported
then, once twistd has chosen the reactor.
"""

import html
import importlib.util
import json
from pathlib import Path
from typing import Any

from twisted.web.static import File

from ahtwist.encoding import dumps

#: the Swagger UI files the page uses, and their types
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "application/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{base}/swagger-ui.css">
<link rel="icon" type="image/png" href="{base}/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{base}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: {url},
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}})
</script>
</body>
</html>
"""


def for_node(node: Any) -> "APIDocs":
    """The app for a node's configuration, with the document built now:
    call it once every action is registered."""
    from ahtwist.openapi import build_openapi

    web = node.config.servers.web
    return APIDocs(
        build_openapi(node.registry, node.config),
        web.openapi.path,
        web.docs.path if web.docs.enabled else None,
    )


def swagger_ui_dir() -> Path:
    """The folder of Swagger UI assets inside the installed swagger-ui-py."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed (pip install swagger-ui-py)")
    return Path(list(spec.submodule_search_locations)[0]) / "static"


class APIDocs:
    """``GET <openapi path>`` (the document) and ``GET <docs path>`` (Swagger UI).

    ``docs_path`` None leaves the page out.  :meth:`klein_app` is the Klein
    app; its routes name full paths, so it is mounted without stripping the
    prefix (:func:`ahtwist.web.mounts.install_mounts`).
    """

    def __init__(
        self, document: dict[str, Any], openapi_path: str, docs_path: str | None = None
    ) -> None:
        self.openapi_path = openapi_path
        self.docs_path = docs_path
        self.body = dumps(document)
        self.assets: dict[str, File] = {}
        if docs_path is not None:
            folder = swagger_ui_dir()
            for name, mime in ASSETS.items():
                if not (folder / name).is_file():
                    raise RuntimeError(f"Swagger UI asset missing: {folder / name}")
                asset = File(str(folder / name))
                # a leaf File is never looked up through its parent, which
                # is where the type and encoding would be set
                asset.type, asset.encoding = mime, None
                self.assets[name] = asset
            title = str(document.get("info", {}).get("title", "API"))
            self.page = _PAGE.format(
                title=html.escape(f"{title} - API documentation"),
                base=html.escape(docs_path.rstrip("/")),
                # JSON in a <script>: no "</" can end the element early
                url=json.dumps(openapi_path).replace("</", "<\\/"),
            ).encode("utf-8")

    def klein_app(self) -> Any:
        """The Klein app of these routes (Klein imported now)."""
        from klein import Klein  # noqa: PLC0415 -- on the first request (see the module docstring)

        app = Klein()
        app.route(self.openapi_path, methods=["GET", "HEAD"])(self.openapi)
        if self.docs_path is not None:
            app.route(self.docs_path, methods=["GET", "HEAD"])(self.docs)
            app.route(self.docs_path.rstrip("/") + "/<string:name>", methods=["GET", "HEAD"])(self.asset)
        return app

    # --- routes -----------------------------------------------------------------------

    def openapi(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        return self.body

    def docs(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return self.page

    def asset(self, request: Any, name: str) -> Any:
        asset = self.assets.get(name)
        if asset is None:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Not Found"
        return asset
