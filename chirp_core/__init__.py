"""What the three Chirp services share: settings, errors, gRPC plumbing, PostgreSQL, IDs, paging."""
