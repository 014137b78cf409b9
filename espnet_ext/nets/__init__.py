"""Gated ESPnet encoders and decoders."""
