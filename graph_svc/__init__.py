"""Graph service: accounts, sessions and the follow graph (schema `graph`)."""
