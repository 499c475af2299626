"""Benchmarks: ``python -m benchmarks [--quick] [--only B1,B2]`` runs every ``b<N>_<name>.py``."""
