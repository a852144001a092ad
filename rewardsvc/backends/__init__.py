"""Compute backends: load models and run forward passes. Know nothing of gRPC or requests."""
