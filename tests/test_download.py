"""Resumable, verified downloads against a local HTTP server (127.0.0.1 only, in a thread)."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from xmodal.core.errors import DataError
from xmodal.data import download as dl
from xmodal.data.download import KNOWN_FILES, RemoteFile, download, download_known

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)  # odd size: the last chunk is short
SHA = hashlib.sha256(PAYLOAD).hexdigest()
CHUNK = 256 * 1024
FAST = {"progress": False, "timeout": 5, "chunk_size": CHUNK, "backoff": 0.01}


@dataclass
class Behaviour:
    """What the test server does; the ``*_once`` switches fire on the next GET only."""

    cut_after_once: int | None = None  # send this many body bytes, then close the socket
    stall_once_s: float | None = None  # send half the body, then go silent this long
    ignore_range: bool = False  # answer 200 with the whole payload regardless
    status: int | None = None  # answer every request with this error status
    requests: list[str | None] = field(default_factory=list)  # Range header of each GET


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``PAYLOAD`` at any path, honouring ``Range: bytes=N-`` (and ``N-M``)."""

    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        b = self.server.behaviour
        rng = self.headers.get("Range")
        b.requests.append(rng)
        if b.status is not None:
            self.send_error(b.status)
            return
        start, end = 0, len(PAYLOAD) - 1
        partial = rng is not None and not b.ignore_range
        if partial:
            first, _, last = rng.removeprefix("bytes=").partition("-")
            start, end = int(first), int(last) if last else end
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = PAYLOAD[start : end + 1]
        self.send_response(206 if partial else 200)
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if b.cut_after_once is not None:
            n, b.cut_after_once = b.cut_after_once, None
            self.wfile.write(body[:n])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)  # FIN, not RST: the client gets all n
            self.close_connection = True
            return
        if b.stall_once_s is not None:
            pause, b.stall_once_s = b.stall_once_s, None
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.server.stop.wait(pause)
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    behaviour: Behaviour
    stop: threading.Event

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client hanging up on a cut/stalled response is expected here


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection that is not to 127.0.0.1, and keep proxies out of the way."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    real = socket.create_connection

    def guarded(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert address[0] == "127.0.0.1", f"test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> tuple[str, Behaviour]:
    """A fresh local server; returns (url, behaviour) and shuts down after the test."""
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.behaviour, srv.stop = Behaviour(), threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def finish() -> None:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)

    request.addfinalizer(finish)
    return f"http://127.0.0.1:{srv.server_address[1]}/nyu.mat", srv.behaviour


def _part(dest: Path) -> Path:
    return dest.with_suffix(dest.suffix + ".part")


def test_full_download_matches_payload_and_sha(server, tmp_path):
    url, b = server
    dest = tmp_path / "sub" / "nyu.mat"
    assert download(url, dest, expected_size=len(PAYLOAD), sha256=SHA, **FAST) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not _part(dest).exists()
    assert b.requests == [None]


def test_progress_bar_does_not_break_the_download(server, tmp_path):
    url, _ = server
    dest = download(url, tmp_path / "nyu.mat", **{**FAST, "progress": True})
    assert dest.read_bytes() == PAYLOAD


def test_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    url, b = server
    dest, k = tmp_path / "nyu.mat", 1_000_003
    _part(dest).write_bytes(PAYLOAD[:k])
    download(url, dest, sha256=SHA, **FAST)
    assert b.requests == [f"bytes={k}-"]
    assert dest.read_bytes() == PAYLOAD
    assert not _part(dest).exists()


def test_retries_after_a_mid_stream_cut(server, tmp_path):
    url, b = server
    b.cut_after_once = 700_000
    dest = download(url, tmp_path / "nyu.mat", expected_size=len(PAYLOAD), **FAST)
    assert b.requests == [None, "bytes=700000-"]
    assert dest.read_bytes() == PAYLOAD


def test_retries_after_a_read_timeout(server, tmp_path):
    url, b = server
    b.stall_once_s = 2.0
    dest = download(url, tmp_path / "nyu.mat", sha256=SHA, **{**FAST, "timeout": 0.3})
    assert len(b.requests) == 2 and b.requests[1] is not None
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    url, b = server
    b.ignore_range = True
    dest = tmp_path / "nyu.mat"
    _part(dest).write_bytes(b"x" * 5000)  # appending the 200 body to this would corrupt it
    download(url, dest, expected_size=len(PAYLOAD), sha256=SHA, **FAST)
    assert b.requests == ["bytes=5000-"]
    assert dest.read_bytes() == PAYLOAD


def test_416_with_a_complete_part_is_done(server, tmp_path):
    url, b = server
    dest = tmp_path / "nyu.mat"
    _part(dest).write_bytes(PAYLOAD)  # size unknown to the caller, so it must ask
    download(url, dest, **FAST)
    assert b.requests == [f"bytes={len(PAYLOAD)}-"]
    assert dest.read_bytes() == PAYLOAD


def test_404_names_the_url_and_the_workaround(server, tmp_path):
    url, b = server
    b.status = 404
    dest = tmp_path / "nyu.mat"
    with pytest.raises(DataError, match="404") as err:
        download(url, dest, **FAST)
    assert url in str(err.value) and "--data PATH" in str(err.value)
    assert b.requests == [None]  # a 404 is not retried
    assert not dest.exists() and not _part(dest).exists()


def test_persistent_5xx_gives_up_after_retries_and_keeps_the_part(server, tmp_path):
    url, b = server
    b.status = 503
    dest = tmp_path / "nyu.mat"
    _part(dest).write_bytes(PAYLOAD[:1000])
    with pytest.raises(DataError, match="503") as err:
        download(url, dest, **{**FAST, "retries": 2})
    assert len(b.requests) == 3 and str(_part(dest)) in str(err.value)
    assert _part(dest).read_bytes() == PAYLOAD[:1000]  # kept for the next resume
    assert not dest.exists()


def test_wrong_sha_raises_and_leaves_nothing_behind(server, tmp_path):
    url, b = server
    dest = tmp_path / "nyu.mat"
    with pytest.raises(DataError, match="sha256") as err:
        download(url, dest, sha256="0" * 64, **FAST)
    assert str(dest) in str(err.value)
    # The part is deleted, not kept: it is not a prefix of the wanted file, so a resume
    # would only rebuild the same corrupt file.
    assert not dest.exists() and not _part(dest).exists()
    download(url, dest, sha256=SHA, **FAST)
    assert b.requests == [None, None]  # the second run started from zero
    assert dest.read_bytes() == PAYLOAD


def test_wrong_expected_size_is_caught_before_downloading(server, tmp_path):
    url, _ = server
    dest = tmp_path / "nyu.mat"
    with pytest.raises(DataError, match="bytes"):
        download(url, dest, expected_size=len(PAYLOAD) + 1, **FAST)
    assert not dest.exists() and not _part(dest).exists()


def test_complete_dest_is_not_fetched_again(server, tmp_path):
    url, b = server
    dest = tmp_path / "nyu.mat"
    dest.write_bytes(PAYLOAD)
    assert download(url, dest, expected_size=len(PAYLOAD), sha256=SHA, **FAST) == dest
    assert download(url, dest, **FAST) == dest  # nothing to check against: trusted
    assert b.requests == []


def test_stale_dest_is_replaced(server, tmp_path):
    url, b = server
    dest = tmp_path / "nyu.mat"
    dest.write_bytes(b"old")
    download(url, dest, sha256=SHA, **FAST)
    assert b.requests == [None] and dest.read_bytes() == PAYLOAD


def test_keyboard_interrupt_keeps_the_part_for_a_resume(server, tmp_path, monkeypatch):
    url, b = server
    dest = tmp_path / "nyu.mat"
    calls = []

    def interrupt(self, n):  # Ctrl-C after the second chunk is on disk
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(dl._Bar, "advance", interrupt)
        with pytest.raises(KeyboardInterrupt):
            download(url, dest, **FAST)
    assert _part(dest).read_bytes() == PAYLOAD[: 2 * CHUNK]
    assert not dest.exists()
    download(url, dest, sha256=SHA, **FAST)
    assert b.requests[-1] == f"bytes={2 * CHUNK}-"
    assert dest.read_bytes() == PAYLOAD


def test_download_known_uses_the_entry(server, tmp_path, monkeypatch):
    url, _ = server
    entry = RemoteFile("toy", url, len(PAYLOAD), SHA, "toy.bin", "a test file")
    monkeypatch.setitem(KNOWN_FILES, "toy", entry)
    path = download_known("toy", tmp_path / "data", **FAST)
    assert path == tmp_path / "data" / "toy.bin" and path.read_bytes() == PAYLOAD


def test_download_known_unknown_name_suggests():
    with pytest.raises(DataError, match="did you mean 'nyu-depth'") as err:
        download_known("nyu-dpeth", Path("."))
    assert "known: nyu-depth" in str(err.value)


def test_nyu_entry_points_at_the_official_file():
    nyu = KNOWN_FILES["nyu-depth"]
    assert nyu.url == (
        "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
    )
    assert nyu.filename == "nyu_depth_v2_labeled.mat" and nyu.name == "nyu-depth"


@pytest.fixture
def nyu_server(tmp_path: Path):
    """A plain static HTTP server (no Range support) over a folder holding real-layout files."""
    import functools
    import sys
    import threading

    sys.path.insert(0, str(Path(__file__).parent))
    from nyu_fixtures import write_nyu_labeled

    root = tmp_path / "served"
    root.mkdir()
    write_nyu_labeled(root / "good.mat", frames=2, height=24, width=32)
    data = (root / "good.mat").read_bytes()
    (root / "cut.mat").write_bytes(data[: len(data) // 2])
    handler = functools.partial(_QuietStatic, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietStatic(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_cli_download_validates_the_file_with_info(nyu_server, tmp_path, monkeypatch, capsys):
    from xmodal.cli.main import main

    nyu = KNOWN_FILES["nyu-depth"]
    monkeypatch.setitem(
        KNOWN_FILES,
        "nyu-depth",
        RemoteFile(nyu.name, f"{nyu_server}/good.mat", None, None, nyu.filename, nyu.description),
    )
    assert main(["data", "download", "nyu-depth", "--to", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "d" / "nyu_depth_v2_labeled.mat").is_file()
    assert "frames" in out and "24" in out and "32" in out  # info's summary of the layout

    monkeypatch.setitem(
        KNOWN_FILES,
        "nyu-depth",
        RemoteFile(nyu.name, f"{nyu_server}/cut.mat", None, None, nyu.filename, nyu.description),
    )
    assert main(["data", "download", "nyu-depth", "--to", str(tmp_path / "e")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "nyu_depth_v2_labeled.mat" in errors[0]
    assert "truncated" in errors[0] and "Traceback" not in errors[0]
