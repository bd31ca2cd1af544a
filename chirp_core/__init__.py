"""What every Chirp service uses, importing none of them: settings, errors, gRPC plumbing,
PostgreSQL and Redis connections, the outbox, metrics, logging, IDs, paging."""
