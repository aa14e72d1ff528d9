"""Overhead benchmarks: our clients against a hand-written grpcio stub call (`python -m bench`)."""
