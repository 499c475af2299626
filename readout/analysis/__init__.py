"""What is computed from events for people, by the DAQ and by the GUI's replay alike.

The monitor feed (summaries, sampled events, run histograms) and the 55Fe calibration (spectra,
line fits, gain, resolution and threshold trends, gain map). No sockets, no files, no Qt.
"""
