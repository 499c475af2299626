"""The built-in stages of the data path, one module each (names and order: ../registry.py)."""
