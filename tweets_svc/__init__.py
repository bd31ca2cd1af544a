"""Tweets service: tweets, their edit history and replies (schema `tweets`)."""
