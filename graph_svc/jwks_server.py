"""The public keys of the access tokens as a JWKS over HTTP (RFC 7517), for Envoy's jwt_authn
filter (remote_jwks) and for anyone at the gateway's GET /.well-known/jwks.json."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from chirp_core.http_server import HttpServer, serve_http
from graph_svc.tokens import KeyRing, KeyRingError

log = logging.getLogger("chirp.graph.jwks")

JWKS_PATH = "/.well-known/jwks.json"


async def serve_jwks(keys: KeyRing, host: str, port: int, *, max_age_seconds: float) -> HttpServer:
    """Serve the key ring's public keys at JWKS_PATH on host:port (0 picks a free port). The keys
    are read from their directory again when it changes: a rotation needs no restart."""
    cache_control = f"public, max-age={max(0, int(max_age_seconds))}"

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.rel_url.path != JWKS_PATH:
            return web.json_response({"code": 5, "message": "no such path"}, status=404)
        if request.method not in ("GET", "HEAD"):
            return web.json_response(
                {"code": 12, "message": "allowed: GET"}, status=405, headers={"allow": "GET"}
            )
        try:
            body = keys.jwks()
        except (KeyRingError, OSError, ValueError) as exc:
            log.error("cannot publish the signing keys: %s", exc)
            return web.json_response({"code": 14, "message": "the signing keys are unavailable"}, status=503)
        return web.Response(
            text=json.dumps(body), content_type="application/json", headers={"cache-control": cache_control}
        )

    server = await serve_http(handle, host, port)
    log.info("signing keys published at http://%s:%d%s", host, server.port, JWKS_PATH)
    return server
