"""Monitoring: predictions joined with their outcomes, accuracy and drift per model and partition."""
