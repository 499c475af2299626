"""Stream and control transport shared by the DAQ and the GUI (docs/STREAM.md).

The monitoring stream (ZeroMQ PUB/SUB of numbered JSON + numpy messages), run control
(validated REQ/REP) and who may connect (loopback or CURVE keys). Nothing here knows detectors.
"""
