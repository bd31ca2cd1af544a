"""The edge: what Envoy calls (the rate-limit service) and the code that writes
Envoy's config (REST to gRPC transcoding, gRPC-Web, auth, limits); chirp_app runs Envoy."""
