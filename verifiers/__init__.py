"""Verifiers: rule-based rewards (math, code) that need no model."""
