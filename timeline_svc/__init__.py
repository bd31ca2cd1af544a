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
layout is in timeline_svc.store and lua/lib.lua.

The rules hold in every mode: the author's own tweets at once (read-your-writes through the
last-post marker of chirp_core.tweet_cache); deleted tweets never (hydration drops what the
tweets service no longer returns; edits and deletes tombstone the tweet cache at commit); a reply
only to readers who follow both its author and the user it answers, a self-reply to all.
"""
