"""The only code that knows every service: the `chirp` command, the stack of one machine, the
process supervisor, the embedded PostgreSQL and Redis and the Envoy launcher."""
