"""Watching a live stream: scoring it as it comes, and sending its anomaly events to sinks."""
