"""Chirp on several hosts, rehearsed on one Linux machine with network namespaces (rehearse.py)."""
