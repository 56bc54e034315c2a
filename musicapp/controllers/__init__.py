"""Glue between panels, the document, the transport and background workers (no music or ML logic)."""
