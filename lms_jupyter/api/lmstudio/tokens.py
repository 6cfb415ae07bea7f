"""Scoped API tokens over HTTP: create (the secret shown once), list, revoke.

Only a full Jupyter identity reaches these calls (the route table marks them
``scoped=False``); the store and the hashing are :mod:`lms_jupyter.security.tokens`.
"""

from __future__ import annotations

from lms_jupyter.api.openai import requests
from lms_jupyter.errors import APIError
from lms_jupyter.security.tokens import TokenStore, TokenStoreError, iso_time


def token_not_found(token_id: str) -> APIError:
    shown = token_id if len(token_id) <= 40 else token_id[:40] + "..."
    return APIError(
        f'No API token with id "{shown}".',
        404,
        "invalid_request_error",
        "token_id",
        "token_not_found",
    )


def _store_failure(exc: TokenStoreError) -> APIError:
    return APIError(str(exc), 500, "server_error", None, "token_store_unavailable")


class TokenAPI:
    """``POST/GET /api/v1/tokens``, ``DELETE /api/v1/tokens/{id}``."""

    def __init__(self, store: TokenStore):
        self.store = store

    def create(self, body) -> dict:
        request = requests.token_create_request(body)
        try:
            record, token = self.store.create(request.name, request.expires_in)
        except TokenStoreError as exc:
            raise _store_failure(exc) from None
        return {
            "id": record.id,
            "object": "api_token",
            "name": record.name,
            "token": token,
            "created_at": iso_time(record.created_at),
            "expires_at": iso_time(record.expires_at),
        }

    def list(self) -> dict:
        try:
            records = self.store.list()
        except TokenStoreError as exc:
            raise _store_failure(exc) from None
        return {"object": "list", "data": [{"object": "api_token", **r.public()} for r in records]}

    def revoke(self, token_id: str) -> dict:
        try:
            record = self.store.revoke(token_id)
        except TokenStoreError as exc:
            raise _store_failure(exc) from None
        if record is None:
            raise token_not_found(token_id)
        return {"id": record.id, "object": "api_token", "name": record.name, "deleted": True}
