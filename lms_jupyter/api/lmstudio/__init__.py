"""LM Studio's own REST API (`/api/v0`, `/api/v1`): models, ps, load/unload, downloads, tokens, and 0.4's `/api/v1/chat`."""
