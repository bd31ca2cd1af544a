"""How every Chirp process logs: one line per record on standard error, tagged with the request ID
of the call it belongs to."""

from __future__ import annotations

import logging
import sys

from chirp_core.rpc import RequestIdLogFilter


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-5s %(name)s [%(request_id)s] %(message)s")
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
