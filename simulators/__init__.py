"""Fake devices that speak the same v1 contract as real ones. Depends on ``devices`` only."""
