"""Broadcasts and per-recipient deliveries: built by the broadcasts issue (see DESIGN.md)."""
