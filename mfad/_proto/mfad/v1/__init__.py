"""Generated code for proto package mfad.v1 (proto/mfad/v1/mfad.proto)."""
