"""The edge: what Envoy calls (ext_authz, the rate-limit service), the local media store, and the
code that writes Envoy's config (REST to gRPC transcoding, gRPC-Web, auth, limits) and runs Envoy."""
