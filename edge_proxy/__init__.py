"""The gateway: REST to gRPC transcoding, authentication and rate limiting."""
