"""Flagsite Python SDK."""
