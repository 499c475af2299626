"""Simulated boards that speak the real protocol over UDP: the BEC emulator (detector physics,
drift and faults) and the replay of a recorded capture as a fake board."""
