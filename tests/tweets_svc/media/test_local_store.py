"""The local store on the gateway: POST /media/ takes an S3-style browser upload under a signed
policy, GET /media/<key> serves it as a CDN would. No bearer token on either."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import aiohttp

from chirp_app.envoy_process import EnvoyProcess
from chirp_app.stack import Stack
from tests.helpers import media_files as files
from tests.helpers.api import Api
from tests.helpers.media import grant, post_form
from tweets_svc.media.stores.local import LocalMediaStore, UploadPolicy, sign_policy
from tweets_svc.media.stores.object_store import CACHE_CONTROL

PNG = files.png(64, 48)


def _json_reason(body: bytes) -> str:
    import json

    document = json.loads(body)
    [info] = [d for d in document["details"] if d["@type"].endswith("ErrorInfo")]
    reason: str = info["reason"]
    return reason


async def test_an_upload_is_stored_and_served_with_immutable_caching(
    api: Api, http: aiohttp.ClientSession, local_store: LocalMediaStore, stack: Stack
) -> None:
    user = await api.new_user()
    granted = await grant(api, user.user_id, "image/png", len(PNG))
    status, _ = await post_form(granted.upload.url, granted.upload.fields, PNG)
    assert status == 204
    key = granted.upload.fields["key"]
    assert local_store.path_of(key).read_bytes() == PNG

    async with http.get(f"/media/{key}") as response:
        assert response.status == 200
        assert await response.read() == PNG
        assert CACHE_CONTROL == "public, max-age=31536000, immutable"
        shared = stack.settings.media_shared_cache_seconds
        assert response.headers["Cache-Control"] == f"{CACHE_CONTROL}, s-maxage={shared}"
        assert response.headers["Content-Type"] == "image/png"
        etag = response.headers["ETag"]
    async with http.get(f"/media/{key}", headers={"If-None-Match": etag}) as response:
        assert response.status == 304
    async with http.head(f"/media/{key}") as response:
        assert response.status == 200 and int(response.headers["Content-Length"]) == len(PNG)
    async with http.get(f"/media/{key}", headers={"Range": "bytes=0-7"}) as response:
        assert response.status == 206 and await response.read() == PNG[:8]
    # Nothing of it is left in the store's scratch directory.
    assert not list((local_store.root / "incoming").iterdir())


def cache_hits(envoy: EnvoyProcess) -> int:
    return sum(
        value for name, value in envoy.stats("cache.event.").items() if name.endswith("event_type.hit")
    )


async def test_a_second_download_is_a_hit_in_envoys_cache(
    api: Api, http: aiohttp.ClientSession, stack: Stack, local_store: LocalMediaStore
) -> None:
    """Envoy's HTTP cache in front of /media/ plays the CDN: the second GET of an object is served
    by Envoy (an Age header, Envoy's hit counter) and the store is not asked again."""
    assert stack.edge is not None and stack.edge.envoy is not None
    envoy = stack.edge.envoy
    user = await api.new_user()
    granted = await grant(api, user.user_id, "image/png", len(PNG))
    assert (await post_form(granted.upload.url, granted.upload.fields, PNG))[0] == 204
    key = granted.upload.fields["key"]

    async with http.get(f"/media/{key}") as first:
        assert first.status == 200 and await first.read() == PNG
        assert "Age" not in first.headers
    hits_before = await asyncio.to_thread(cache_hits, envoy)
    local_store.path_of(key).unlink()  # the store no longer has it: only the cache can answer
    async with http.get(f"/media/{key}") as second:
        assert second.status == 200 and await second.read() == PNG
        assert "Age" in second.headers
    assert await asyncio.to_thread(cache_hits, envoy) == hits_before + 1


async def test_an_expired_grant_is_refused(api: Api, local_store: LocalMediaStore) -> None:
    key = "0" * 32 + ".png"
    expired = UploadPolicy(key, "image/png", len(PNG), len(PNG), datetime.now(UTC) - timedelta(seconds=1))
    fields = sign_policy(expired, local_store._secret)
    status, body = await post_form(local_store.upload_url, fields, PNG)
    assert status == 403 and _json_reason(body) == "UPLOAD_EXPIRED"
    assert not local_store.path_of(key).exists()


async def test_a_tampered_policy_or_signature_is_refused(api: Api, local_store: LocalMediaStore) -> None:
    user = await api.new_user()
    fields = dict((await grant(api, user.user_id, "image/png", len(PNG))).upload.fields)
    forged = {**fields, "signature": hashlib.sha256(b"guess").hexdigest()}
    status, body = await post_form(local_store.upload_url, forged, PNG)
    assert status == 403 and _json_reason(body) == "UPLOAD_SIGNATURE_INVALID"
    # A policy for a larger size signed with another key.
    bigger = UploadPolicy(fields["key"], "image/png", 1, 10**9, datetime.now(UTC) + timedelta(minutes=5))
    status, body = await post_form(local_store.upload_url, sign_policy(bigger, b"not the key"), PNG)
    assert status == 403 and _json_reason(body) == "UPLOAD_SIGNATURE_INVALID"
    assert not local_store.path_of(fields["key"]).exists()


async def test_the_form_must_match_the_policy(api: Api, local_store: LocalMediaStore) -> None:
    user = await api.new_user()
    fields = dict((await grant(api, user.user_id, "image/png", len(PNG))).upload.fields)
    for changed in ({"Content-Type": "text/html"}, {"key": "1" * 32 + ".png"}, {"acl": "public-read"}):
        status, body = await post_form(local_store.upload_url, {**fields, **changed}, PNG)
        assert status == 403, changed
        assert _json_reason(body) == "UPLOAD_POLICY_VIOLATED"
    assert not local_store.path_of(fields["key"]).exists()


async def test_a_file_of_another_size_than_granted_is_refused(api: Api, local_store: LocalMediaStore) -> None:
    user = await api.new_user()
    fields = dict((await grant(api, user.user_id, "image/png", len(PNG))).upload.fields)
    for data in (PNG + b"x", PNG[:-1]):
        status, body = await post_form(local_store.upload_url, fields, data)
        assert status == 400 and _json_reason(body) == "UPLOAD_SIZE_OUT_OF_RANGE"
    assert not local_store.path_of(fields["key"]).exists()
    assert not list((local_store.root / "incoming").iterdir())


async def test_an_object_is_never_replaced(api: Api, local_store: LocalMediaStore) -> None:
    user = await api.new_user()
    fields = dict((await grant(api, user.user_id, "image/png", len(PNG))).upload.fields)
    assert (await post_form(local_store.upload_url, fields, PNG))[0] == 204
    other = files.png(48, 64)
    assert len(other) == len(PNG)
    status, body = await post_form(local_store.upload_url, fields, other)
    assert status == 409 and _json_reason(body) == "OBJECT_EXISTS"
    assert local_store.path_of(fields["key"]).read_bytes() == PNG


async def test_a_body_over_the_media_maximum_is_refused_before_it_is_read(stack: Stack) -> None:
    limit = max(stack.settings.media_max_image_bytes, stack.settings.media_max_video_bytes)
    headers = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(limit + 10**6)}
    async with (
        aiohttp.ClientSession() as session,
        session.post(stack.settings.media_gateway_url, headers=headers, data=b"--x--") as response,
    ):
        assert response.status == 413


async def test_malformed_uploads_and_unknown_objects(http: aiohttp.ClientSession) -> None:
    async with http.post("/media/", json={"key": "x"}) as response:
        assert response.status == 400 and _json_reason(await response.read()) == "UPLOAD_FORM_INVALID"
    form = aiohttp.FormData()
    form.add_field("key", "x")
    async with http.post("/media/", data=form) as response:
        assert response.status == 400
    for path in ("/media/" + "f" * 32 + ".png", "/media/..%2f..%2fupload-signing.key", "/media/a/b"):
        async with http.get(path) as response:
            assert response.status == 404, path
    # Only uploads and reads: the store refuses anything else.
    async with http.delete("/media/" + "f" * 32 + ".png") as response:
        assert response.status == 405 and response.headers["Allow"] == "GET, HEAD"
