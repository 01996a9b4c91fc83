"""The transport-free domain of mfad.

Nothing under this package imports a transport (RADIUS, gRPC, HTTP), a database
driver or a metrics library: those live outside and implement the interfaces
declared in :mod:`mfad.core.ports`. ``tests/test_architecture.py`` enforces it.
"""
