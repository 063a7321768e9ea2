"""`maln fetch` against a real HTTP server on 127.0.0.1: success, hash mismatch, 404, refused
connection, a transfer cut short; and that a failure leaves nothing at the destination."""

import hashlib
import http.server
import socket
import threading

import pytest

from builders import write_params
from conftest import run_maln
from maln.config import load_params
from maln.data.fetch import fetch
from maln.errors import FetchError

PAYLOAD = b"conv-emotion features " * 5000


def blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    hits = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        Handler.hits.append(self.path)
        if self.path.startswith("/ok/") or self.path.startswith("/other/"):
            body = PAYLOAD if self.path.startswith("/ok/") else b"something else entirely"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/cut/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.send_error(404, "Not Found")


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def project(tmp_path, url, sha1=blob_sha1(PAYLOAD)):
    entry = {"layout": "conv-emotion-iemocap", "url": url, "sha1": sha1}
    return load_params(write_params(tmp_path, {"remote": entry}))


def test_fetch_downloads_verifies_and_records_hashes(tmp_path, server):
    params = project(tmp_path, f"{server}/ok/FEATURES.pkl")
    [record] = fetch(params, "remote", progress=False)
    target = tmp_path / "data/raw/FEATURES.pkl"
    assert target.read_bytes() == PAYLOAD
    assert record["sha1"] == blob_sha1(PAYLOAD)
    assert record["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert (tmp_path / "data/raw/FEATURES.pkl.hashes.json").is_file()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


def test_present_and_valid_file_is_not_downloaded_again(tmp_path, server):
    params = project(tmp_path, f"{server}/ok/AGAIN.pkl")
    fetch(params, "remote", progress=False)
    before = list(Handler.hits)
    fetch(params, "remote", progress=False)
    assert Handler.hits == before


def test_corrupted_local_copy_is_replaced(tmp_path, server):
    params = project(tmp_path, f"{server}/ok/REPAIR.pkl")
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / "data/raw/REPAIR.pkl").write_bytes(PAYLOAD[:100])
    fetch(params, "remote", progress=False)
    assert (tmp_path / "data/raw/REPAIR.pkl").read_bytes() == PAYLOAD


@pytest.mark.parametrize("path, message", [
    ("/other/F.pkl", "hash mismatch"),
    ("/missing/F.pkl", "HTTP 404"),
    ("/cut/F.pkl", "cut short"),
])
def test_failed_fetch_leaves_nothing_and_explains(tmp_path, server, path, message):
    url = f"{server}{path}"
    params = project(tmp_path, url)
    with pytest.raises(FetchError) as e:
        fetch(params, "remote", progress=False)
    text = str(e.value)
    assert message in text and url in text and "place the file by hand" in text
    raw = tmp_path / "data/raw"
    assert not any(raw.rglob("*"))  # no file, partial or whole (the folder itself may exist)


def test_refused_connection_through_the_cli(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/REMOTE_features.pkl"
    write_params(tmp_path, {"remote": {"layout": "conv-emotion-iemocap", "url": url, "sha1": "0" * 40}})
    proc = run_maln("fetch", "remote", cwd=tmp_path)
    assert proc.returncode == 1
    assert "could not connect" in proc.stderr and url in proc.stderr
    assert "curl -L -o data/raw/REMOTE_features.pkl" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data/raw/REMOTE_features.pkl").exists()


def test_path_entry_is_checked_against_its_optional_sha1(tmp_path):
    (tmp_path / "mine.pkl").write_bytes(PAYLOAD)
    params = load_params(write_params(tmp_path, {
        "good": {"layout": "conv-emotion-iemocap", "path": "mine.pkl", "sha1": blob_sha1(PAYLOAD)},
        "bad": {"layout": "conv-emotion-iemocap", "path": "mine.pkl", "sha1": "1" * 40},
        "absent": {"layout": "conv-emotion-iemocap", "path": "data/raw/absent.pkl"},
    }))
    fetch(params, "good", progress=False)
    with pytest.raises(FetchError, match="not the pinned file"):
        fetch(params, "bad", progress=False)
    assert (tmp_path / "mine.pkl").exists()  # a user's file is never deleted
    with pytest.raises(FetchError, match="does not exist"):
        fetch(params, "absent", progress=False)
