"""Software back-end card (BEC) emulator: detector physics and a board that speaks the protocol."""
