"""The adapter registry: versions adapters against fingerprints of their base models."""
