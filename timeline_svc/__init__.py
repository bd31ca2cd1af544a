"""Timeline service: home and user timelines, and the live stream."""
