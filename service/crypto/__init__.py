"""Encryption at rest: keys, and authenticated sealing of stored values (see `sealing.py`)."""
