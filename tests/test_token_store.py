"""The scoped-token store on its own: hashing, the file, expiry, concurrent servers."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from lms_jupyter.security.tokens import TokenStore, TokenStoreError


def test_secret_is_shown_once_and_stored_hashed(tmp_path):
    store = TokenStore(tmp_path / "d" / "api_tokens.json")
    record, token = store.create("notebook app")
    assert token.startswith(f"sk-lmj-{record.id}:")
    secret = token.split(":", 1)[1]
    text = store.path.read_text()
    assert secret not in text and token not in text
    saved = json.loads(text)["tokens"][0]
    assert saved["hash"] == record.hash and len(saved["salt"]) == 32
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    assert store.verify(token).id == record.id
    # the same secret under another token's salt gives another hash
    other, other_token = store.create("second")
    assert other.salt != record.salt and other.hash != record.hash
    assert store.verify(other_token).id == other.id
    assert not any(name.endswith(".tmp") for name in os.listdir(store.path.parent))


@pytest.mark.parametrize(
    "guess",
    [
        "",
        "sk-lmj-",
        "sk-lmj-0123456789abcdef:" + "A" * 43,
        "Bearer x",
        "sk-lmj-zz:zz",
        "x" * 100_000,
        "sk-lmj-0123456789abcdef:\x00" + "A" * 42,
    ],
)
def test_wrong_tokens_are_refused(tmp_path, guess):
    store = TokenStore(tmp_path / "api_tokens.json")
    record, token = store.create("app")
    assert store.verify(guess) is None
    tampered = token[:-1] + ("B" if token[-1] != "B" else "C")
    assert store.verify(tampered) is None
    assert store.verify(f"sk-lmj-{record.id}:" + "A" * 43) is None


def test_revoke_list_and_expiry(tmp_path):
    store = TokenStore(tmp_path / "api_tokens.json")
    keep, keep_token = store.create("keep")
    gone, gone_token = store.create("gone", expires_in=3600)
    assert [r.name for r in store.list()] == ["keep", "gone"]
    assert store.list()[1].expires_at == pytest.approx(gone.created_at + 3600)
    assert store.revoke(gone.id).name == "gone"
    assert store.revoke(gone.id) is None
    assert store.revoke("../../etc/passwd") is None
    assert store.verify(gone_token) is None and store.verify(keep_token) is not None
    # expiry is judged at every use
    data = json.loads(store.path.read_text())
    data["tokens"][0]["expires_at"] = time.time() - 1
    store.path.write_text(json.dumps(data))
    assert store.verify(keep_token) is None
    assert store.list()[0].public()["expired"] is True


def test_last_used_is_written_lazily(tmp_path):
    store = TokenStore(tmp_path / "api_tokens.json", flush_interval=3600)
    record, token = store.create("app")
    before = store.path.stat().st_mtime_ns
    for _ in range(50):
        assert store.verify(token) is not None
    assert store.path.stat().st_mtime_ns == before  # no write per request
    assert store.list()[0].last_used is not None  # but the server knows
    store.flush()
    saved = json.loads(store.path.read_text())["tokens"][0]
    assert saved["last_used"] == pytest.approx(time.time(), abs=60)


def test_two_servers_sharing_a_data_dir_see_each_others_changes(tmp_path):
    path = tmp_path / "api_tokens.json"
    first, second = TokenStore(path), TokenStore(path)
    record, token = first.create("from first")
    assert second.verify(token).id == record.id  # created elsewhere: re-read
    _, token2 = second.create("from second")
    assert {r.name for r in first.list()} == {"from first", "from second"}
    assert first.revoke(record.id) is not None
    assert second.verify(token) is None  # revoked elsewhere: at once
    assert first.verify(token2) is not None


def test_a_damaged_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "api_tokens.json"
    path.write_text("{not json")
    with pytest.raises(TokenStoreError, match="api_tokens.json"):
        TokenStore(path).list()
    with pytest.raises(TokenStoreError, match="damaged"):
        TokenStore(path).create("x")
    assert path.read_text() == "{not json"  # nothing overwritten
