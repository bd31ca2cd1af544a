"""Typed Python client for the Chirp REST API: `Client` (blocking) and `AsyncClient` (asyncio)."""

from chirp_client._protocol import ReconnectPolicy
from chirp_client.client import AsyncClient, Client
from chirp_client.errors import (
    AlreadyExists,
    ChirpApiError,
    ChirpError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    TransportError,
    Unauthenticated,
    Unavailable,
)
from chirp_client.models import (
    Media,
    MediaUploadGrant,
    Page,
    Relationship,
    Session,
    Tweet,
    TweetVersion,
    User,
)

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "ChirpApiError",
    "ChirpError",
    "Client",
    "FailedPrecondition",
    "InvalidArgument",
    "Media",
    "MediaUploadGrant",
    "NotFound",
    "Page",
    "PermissionDenied",
    "RateLimited",
    "ReconnectPolicy",
    "Relationship",
    "Session",
    "TransportError",
    "Tweet",
    "TweetVersion",
    "Unauthenticated",
    "Unavailable",
    "User",
]
