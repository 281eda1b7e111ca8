"""Scheduled digests: schedule parsing, the due-digest dispatcher, the empty-window policy."""
