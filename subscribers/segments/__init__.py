"""Segments: saved, named audience filters (Kit's Segments): their pages, their services, and the
SQL condition other features combine into their queries (filters.segments_condition)."""
