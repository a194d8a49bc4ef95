"""Links, events and rollups: built by the tracking issue (see DESIGN.md)."""
