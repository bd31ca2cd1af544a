"""Timeline service: home and user timelines, the live stream, and the fan-out workers.

Home timelines come from one of three modes (CHIRP_TIMELINE_MODE):

  pull    computed at each read from the graph and tweets services (timeline_svc.pull).
  push    fan-out on write: the workers (timeline_svc.fanout) push each new tweet into every warm
          follower's Redis timeline; reads are one Redis round trip (timeline_svc.home).
  hybrid  push, except for celebrities (more than CHIRP_CELEBRITY_THRESHOLD followers): their
          tweets go only to their own recent-tweets set, merged into their followers' pages at
          read time. The default.

The events come from the graph and tweets services' outboxes through a Redis stream
(chirp_core.outbox). A timeline is warm while read within CHIRP_TIMELINE_WARM_DAYS (its TTL); the
workers write only warm ones, and a cold reader's first read rebuilds it from the pull path. In
every mode PostgreSQL stays the truth: a Redis error, a page below what Redis holds, or a
timeline being rebuilt are all answered by the pull path, with the same keyset cursor. The Redis
layout is in timeline_svc.storage, timeline_svc.keys and lua/lib.lua.

The rules hold in every mode: the author's own tweets at once (read-your-writes through the
tweets service's last-post key, timeline_svc.keys); deleted tweets never (hydration drops what the
tweets service no longer returns, and serves no cached copy of a tweet it marked changed); a reply
only to readers who follow both its author and the user it answers, a self-reply to all
(timeline_svc.visibility, the rule's one owner).

Layers: servicer.py (proto in and out) -> service.py, home.py, pull.py, fanout.py, cache.py (the
rules; no gRPC, psycopg or Redis) -> storage.py and live.py (Redis: every command and script),
events.py (the events stream's consumer group, calling fanout.py), upstreams.py (the other
services over gRPC, behind ports.py, which turns their errors into the ports' own).
"""
