"""The local media store's HTTP server (settings.media_store "local"): the bucket of one machine.
Envoy routes /media/ here, with its HTTP cache in front playing the CDN.

POST /media/ takes an upload as S3 takes a browser-based POST: multipart/form-data with the
grant's fields (key, Content-Type, policy, signature), then the file as the last field, `file`.
The signed policy is the authorization: no bearer token (Envoy's media route turns jwt_authn off).
The file streams to disk in chunks and is refused as soon as it outgrows the policy's length
range; the answer is 204, as S3's. GET and HEAD /media/<key> serve an object as a CDN would:
immutable Cache-Control, an ETag, conditional and Range requests.

POST /media (no slash) is not handled here: it is the CreateMediaUpload RPC that hands out grants.
"""

from __future__ import annotations

import logging
import uuid

import grpc
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from chirp_core.http_server import HttpServer, serve_http
from chirp_core.rpc import REQUEST_ID_HEADER, status_body
from chirp_core.settings import Settings
from tweets_svc.media.stores.local import LocalMediaStore, ObjectExists, PolicyError, UploadPolicy
from tweets_svc.media.stores.object_store import CACHE_CONTROL, FILE_FIELD, ObjectNotFound

log = logging.getLogger("chirp.media")

MEDIA_PREFIX = "/media/"
UPLOAD_PATH = MEDIA_PREFIX
# Room for the form fields and the multipart framing around the file.
FORM_OVERHEAD_BYTES = 64 * 1024
FIELD_MAX_BYTES = 8 * 1024
CHUNK_BYTES = 256 * 1024


class _Refused(Exception):
    def __init__(self, status: int, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.reason = reason
        self.message = message


class LocalMediaEndpoint:
    """The /media/ handler. `max_object_bytes` bounds a request body (the largest media allowed)."""

    def __init__(self, store: LocalMediaStore, max_object_bytes: int, shared_cache_seconds: int = 60) -> None:
        self.store = store
        self.max_object_bytes = max_object_bytes
        # Browsers keep an object for good; a shared cache (Envoy's, a CDN) asks again after this,
        # so a deleted object stops being served.
        self.cache_control = f"{CACHE_CONTROL}, s-maxage={shared_cache_seconds}"

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalMediaEndpoint | None:
        """The endpoint when media are kept locally; None with S3 (the bucket serves itself)."""
        if settings.media_store != "local":
            return None
        max_bytes = max(settings.media_max_image_bytes, settings.media_max_video_bytes)
        return cls(LocalMediaStore.from_settings(settings), max_bytes, settings.media_shared_cache_seconds)

    @staticmethod
    def handles(raw_path: str) -> bool:
        return raw_path.startswith(MEDIA_PREFIX)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.rel_url.raw_path
        request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        try:
            if not self.handles(path):
                raise _not_found(path)
            if path == UPLOAD_PATH:
                if request.method != "POST":
                    raise _method_not_allowed("POST")
                return await self._upload(request, request_id)
            if request.method not in ("GET", "HEAD"):
                raise _method_not_allowed("GET, HEAD")
            return await self._download(request, path.removeprefix(MEDIA_PREFIX), request_id)
        except _Refused as refused:
            return _error(refused, request_id)

    async def _upload(self, request: web.BaseRequest, request_id: str) -> web.StreamResponse:
        limit = self.max_object_bytes + FORM_OVERHEAD_BYTES
        if request.content_length is not None and request.content_length > limit:
            raise _Refused(
                413,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "BODY_TOO_LARGE",
                f"the request body is larger than {limit} bytes",
            )
        if request.content_type != "multipart/form-data":
            raise _bad_form("an upload is multipart/form-data: the grant's fields, then the file")
        try:
            reader = await request.multipart()
            fields: dict[str, str] = {}
            while True:
                part = await reader.next()
                if part is None:
                    raise _bad_form(f"the form has no {FILE_FIELD!r} field")
                if not isinstance(part, BodyPartReader) or not part.name:
                    raise _bad_form("every form part must be a named field")
                if part.name == FILE_FIELD:
                    break
                if part.name.lower() in {name.lower() for name in fields}:
                    raise _bad_form(f"form field {part.name!r} is given twice")
                fields[part.name] = await _read_field(part)
            try:
                policy = self.store.verify_upload(fields)
            except PolicyError as denied:
                raise _Refused(
                    403, grpc.StatusCode.PERMISSION_DENIED, denied.reason, denied.message
                ) from None
            except ObjectNotFound:
                raise _bad_form("the key is not one an object can have") from None
            await self._receive(part, policy)
        except (ValueError, HttpProcessingError) as exc:
            raise _bad_form(f"the form cannot be read: {exc}") from None
        log.info("stored media %s [%s]", policy.key, request_id)
        return web.Response(status=204, headers={REQUEST_ID_HEADER: request_id})

    async def _receive(self, part: BodyPartReader, policy: UploadPolicy) -> None:
        """Stream the file to the store within the policy's length range."""
        min_bytes, max_bytes = policy.min_bytes, policy.max_bytes
        upload = await self.store.open_upload(policy)
        try:
            while chunk := await part.read_chunk(CHUNK_BYTES):
                if upload.size + len(chunk) > max_bytes:
                    raise _size_refused(f"the file is larger than the grant's {max_bytes} bytes")
                await upload.write(chunk)
            if upload.size < min_bytes:
                raise _size_refused(f"the file is {upload.size} bytes, smaller than the grant's {min_bytes}")
            await upload.commit()
        except ObjectExists:
            raise _Refused(
                409, grpc.StatusCode.ALREADY_EXISTS, "OBJECT_EXISTS", "this key has its object already"
            ) from None
        except BaseException:
            await upload.abort()
            raise

    async def _download(self, request: web.BaseRequest, key: str, request_id: str) -> web.StreamResponse:
        try:
            path = self.store.path_of(key)
        except ObjectNotFound:
            raise _not_found(key) from None
        if not path.is_file():
            raise _not_found(key)
        return web.FileResponse(
            path,
            chunk_size=CHUNK_BYTES,
            headers={
                "Content-Type": self.store.content_type_of(key),
                "Cache-Control": self.cache_control,
                REQUEST_ID_HEADER: request_id,
            },
        )


async def _read_field(part: BodyPartReader) -> str:
    data = b""
    while chunk := await part.read_chunk(FIELD_MAX_BYTES):
        data += chunk
        if len(data) > FIELD_MAX_BYTES:
            raise _bad_form(f"form field {part.name!r} is longer than {FIELD_MAX_BYTES} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise _bad_form(f"form field {part.name!r} is not UTF-8") from None


def _error(refused: _Refused, request_id: str) -> web.Response:
    body = status_body(refused.code.value[0], refused.message, refused.reason)
    response = web.Response(status=refused.status, text=body, content_type="application/json")
    response.headers[REQUEST_ID_HEADER] = request_id
    if refused.status == 405:
        response.headers["Allow"] = refused.message.rpartition(": ")[2]
    return response


def _bad_form(message: str) -> _Refused:
    return _Refused(400, grpc.StatusCode.INVALID_ARGUMENT, "UPLOAD_FORM_INVALID", message)


def _size_refused(message: str) -> _Refused:
    return _Refused(400, grpc.StatusCode.INVALID_ARGUMENT, "UPLOAD_SIZE_OUT_OF_RANGE", message)


def _not_found(key: str) -> _Refused:
    return _Refused(404, grpc.StatusCode.NOT_FOUND, "MEDIA_NOT_FOUND", f"no media {key!r}")


def _method_not_allowed(allowed: str) -> _Refused:
    return _Refused(405, grpc.StatusCode.UNIMPLEMENTED, "METHOD_NOT_ALLOWED", f"allowed: {allowed}")


async def serve_media(endpoint: LocalMediaEndpoint, host: str, port: int) -> HttpServer:
    """Serve `endpoint` on host:port (0 picks a free port). Request bodies are streamed and bounded
    by the endpoint itself."""
    server = await serve_http(endpoint.handle, host, port)
    log.info("media store serving http://%s:%d%s", host, server.port, MEDIA_PREFIX)
    return server
