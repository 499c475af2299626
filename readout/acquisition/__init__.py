"""The acquisition of one detector line: run states, supervision, settings, run log, metrics.

Wires the link, the data path, the store and the transport together for ``agetdaq run`` and
``agetdaq serve``: configure the board, start and stop runs, watch the board and the disk,
publish status, allocate run numbers.
"""
