"""The DAQ: receiver, event builder, processing, writer, stream, control and the BEC emulator."""

__version__ = "0.1.0"
