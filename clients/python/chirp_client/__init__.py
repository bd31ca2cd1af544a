"""Typed Python client for the Chirp REST API."""
