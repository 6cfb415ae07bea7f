"""OpenAI's Files API (``/v1/files``), as far as the Batch API needs it.

Upload (multipart ``file`` + ``purpose``), list, retrieve, download the content, delete.
Input files of purpose ``batch`` are checked to be JSONL on upload; output and error
files of finished batches appear here with purpose ``batch_output``. Storage is
:class:`~.batch_store.BatchStore`'s folder.
"""

from __future__ import annotations

from lms_jupyter.api.files_batches import requests as wire
from lms_jupyter.api.files_batches.store import BatchStore
from lms_jupyter.api.results import BytesResponse, JSONResponse
from lms_jupyter.errors import APIError


def file_not_found(file_id: str) -> APIError:
    return APIError(
        f"No such File object: {file_id}", 404, "invalid_request_error", "id", "file_not_found"
    )


def page(items: list[dict], query: wire.ListQuery) -> dict:
    """OpenAI's cursor page: ``data``, ``has_more``, ``first_id``, ``last_id``."""
    if query.order == "asc":
        items = list(reversed(items))
    if query.after:
        ids = [item["id"] for item in items]
        items = items[ids.index(query.after) + 1 :] if query.after in ids else []
    chosen = items[: query.limit]
    return {
        "object": "list",
        "data": chosen,
        "has_more": len(items) > len(chosen),
        "first_id": chosen[0]["id"] if chosen else None,
        "last_id": chosen[-1]["id"] if chosen else None,
    }


class FilesAPI:
    def __init__(self, store: BatchStore):
        self.store = store

    def upload(self, upload: wire.Upload) -> JSONResponse:
        """Blocking (writes the file): the route runs it on a thread."""
        checked = wire.file_upload(upload)
        return JSONResponse(self.store.add_file(checked.filename, checked.purpose, checked.content))

    def list(self, query: dict) -> dict:
        checked = wire.list_query(query)
        return page(self.store.list_files(checked.purpose), checked)

    def retrieve(self, file_id: str) -> dict:
        found = self.store.get_file(file_id)
        if found is None:
            raise file_not_found(file_id)
        return found

    def content(self, file_id: str) -> BytesResponse:
        content = self.store.file_content(file_id)
        if content is None:
            raise file_not_found(file_id)
        return BytesResponse(content, "application/octet-stream")

    def delete(self, file_id: str) -> dict:
        if not self.store.delete_file(file_id):
            raise file_not_found(file_id)
        return {"id": file_id, "object": "file", "deleted": True}
