"""Generated gRPC code (scripts/gen_proto); import from mfad._proto.mfad.v1."""
