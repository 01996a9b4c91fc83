"""Generated code for the proto package tree mfad.*."""
