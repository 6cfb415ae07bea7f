"""Talking to a running lms-jupyter server: finding it (discovery) and using its models over HTTP (connected)."""
