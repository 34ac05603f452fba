"""The gateway\x27s routes, one router per area."""
