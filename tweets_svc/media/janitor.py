"""The media janitor, a task of every tweets service process: it forgets uploads never attached
once they are older than the pending TTL, and deletes from the store the objects queued in
tweets.media_outbox (those expired uploads, and the media of deleted tweets).

Several janitors may run at once (one per tweets process): each claims its rows with a lease, so
a row is worked by one janitor at a time, and by another if that one dies. Deleting an object is
idempotent, so a row done twice does no harm.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chirp_core.errors import ChirpError
from tweets_svc.media.stores.object_store import MediaStore

if TYPE_CHECKING:
    from tweets_svc.media.storage import MediaStorage

log = logging.getLogger("chirp.tweets.media_janitor")

BATCH = 100
# How long a claimed deletion stays hidden from other janitors: the retry delay after a failure.
LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Sweep:
    expired: int
    deleted: int
    failed: int


class MediaJanitor:
    def __init__(
        self, storage: MediaStorage, store: MediaStore, pending_ttl_seconds: float, interval_seconds: float
    ) -> None:
        self._storage = storage
        self._store = store
        self._pending_ttl = pending_ttl_seconds
        self._interval = interval_seconds

    async def sweep(self) -> Sweep:
        """One pass: expire what is due, then work off the queue until it is empty or only
        failing rows remain."""
        expired = 0
        while (count := await self._storage.expire_pending(self._pending_ttl, BATCH)) > 0:
            expired += count
        deleted = failed = 0
        while claimed := await self._storage.claim_deletions(BATCH, LEASE_SECONDS):
            done: list[int] = []
            for deletion in claimed:
                try:
                    await self._store.delete(deletion.object_key)
                except ChirpError as exc:
                    failed += 1
                    log.warning(
                        "could not delete media %s (attempt %d): %s; retrying in %.0fs",
                        deletion.media_id,
                        deletion.attempts,
                        exc.message,
                        LEASE_SECONDS,
                    )
                else:
                    done.append(deletion.id)
            await self._storage.finish_deletions(done)
            deleted += len(done)
            if not done:
                break
        if expired or deleted or failed:
            log.info(
                "media janitor: %d uploads expired, %d objects deleted, %d failed", expired, deleted, failed
            )
        return Sweep(expired, deleted, failed)

    async def run(self) -> None:
        """Sweep every interval until cancelled; a failed sweep is logged and the next one retries."""
        while True:
            try:
                await self.sweep()
            except ChirpError as exc:
                log.warning("media janitor: %s", exc.message)
            except Exception:
                log.exception("media janitor failed; retrying")
            await asyncio.sleep(self._interval)
