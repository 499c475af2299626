"""Bytes <-> words <-> events: the Feminos-family wire protocol (no sockets here)."""
