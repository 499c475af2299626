"""The shift crew's PyQt6 + pyqtgraph online monitor, fed by the DAQ's ZeroMQ stream."""
