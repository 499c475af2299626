"""agetdaq: readout and online monitor of the BabyIAXO Micromegas X-ray detector.

The path of a datagram is the layout of the code:

* :mod:`agetdaq.protocol` (repository folder ``protocol/``): bytes <-> words <-> events, no I/O.
* :mod:`agetdaq.readout` (``readout/``): the DAQ, one subpackage per stage (see its docstring).
* :mod:`agetdaq.gui` (``gui/``): the shift crew's monitor, fed by the stream or a run file.
"""

__version__ = "0.1.0"
