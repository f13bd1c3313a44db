"""fetch: env folders by file name, the cache, and real downloads from a local HTTP server."""

import hashlib
import http.server
import threading
from functools import partial

import pytest

from cascade_explorer.core import fetch
from cascade_explorer.core.fetch import FetchError, resolve_image, resolve_model_file


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; yields (base URL, folder, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "cache"))
    for name in (fetch.MODELS_ENV, fetch.IMAGES_ENV, fetch.OFFLINE_ENV, "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def test_download_verifies_sha256_and_caches(server, tmp_path):
    base, root, requests = server
    payload = b"model bytes " * 1000
    (root / "m.tflite").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    path = resolve_model_file("m.tflite", url=f"{base}/m.tflite", sha256=digest)
    assert path.read_bytes() == payload and path.is_relative_to(tmp_path / "cache")
    assert requests == ["/m.tflite"]
    # Second call: from the cache, no request.
    assert resolve_model_file("m.tflite", url=f"{base}/m.tflite", sha256=digest) == path
    assert requests == ["/m.tflite"]


def test_sha256_mismatch_is_a_clear_error_and_keeps_nothing(server, tmp_path):
    base, root, _ = server
    (root / "m.tflite").write_bytes(b"tampered")
    with pytest.raises(FetchError, match=r"m\.tflite.*sha256 does not match.*" + "0" * 64):
        resolve_model_file("m.tflite", url=f"{base}/m.tflite", sha256="0" * 64)
    assert not (tmp_path / "cache" / "models" / "m.tflite").exists()


def test_http_404_is_a_clear_error(server):
    base, _, _ = server
    with pytest.raises(FetchError, match=r"gone\.tflite: download from .*failed"):
        resolve_model_file("gone.tflite", url=f"{base}/gone.tflite", sha256="1" * 64)


def test_image_download_uses_url_base_plus_image_path(server):
    base, root, requests = server
    (root / "data").mkdir()
    (root / "data" / "a.JPEG").write_bytes(b"jpeg")
    path = resolve_image("data/a.JPEG", url_base=base + "/", sha256=hashlib.sha256(b"jpeg").hexdigest())
    assert path.read_bytes() == b"jpeg" and requests == ["/data/a.JPEG"]


def test_env_folders_are_looked_up_by_file_name_first(tmp_path, monkeypatch, server):
    base, _, requests = server
    models = tmp_path / "models"
    models.mkdir()
    (models / "mobilenet_v1_0.25_128_quant.tflite").write_bytes(b"local")
    monkeypatch.setenv(fetch.MODELS_ENV, str(models))
    assert resolve_model_file("mobilenet_v1_0.25_128_quant.tflite").read_bytes() == b"local"
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "x.JPEG").write_bytes(b"img")
    monkeypatch.setenv(fetch.IMAGES_ENV, str(images))
    assert resolve_image("data/x.JPEG", url_base=base).read_bytes() == b"img"
    assert requests == []


def test_missing_without_url_or_offline_names_the_env_variable(tmp_path, monkeypatch):
    with pytest.raises(FetchError, match="CASCADE_EXPLORER_MODELS"):
        resolve_model_file("unknown.tflite")
    monkeypatch.setenv(fetch.OFFLINE_ENV, "1")
    with pytest.raises(FetchError, match="downloads are off"):
        resolve_model_file("mobilenet_v2_1.0_224_quant.tflite")  # known URL, but offline


def test_known_models_match_shared_source(shared_dir):
    """The URLs and checksums built in equal ../shared/models/SOURCE.md and the files there."""
    text = (shared_dir / "models" / "SOURCE.md").read_text()
    for name, known in fetch.KNOWN_MODEL_FILES.items():
        assert known["sha256"] in text and known["url"] in text
        assert fetch.sha256_file(shared_dir / "models" / "tflite" / name) == known["sha256"]


def test_cache_is_keyed_by_content_not_file_name(server, tmp_path):
    """A bank without hashes downloads its own 'a.JPEG'; a bank naming the same file with a hash
    must not get that file from the cache (it showed under another bank's label)."""
    base, root, requests = server
    (root / "evil").mkdir()
    (root / "good").mkdir()
    (root / "evil" / "a.JPEG").write_bytes(b"planted picture")
    (root / "good" / "a.JPEG").write_bytes(b"real picture")
    planted = resolve_image("a.JPEG", url_base=base + "/evil")          # no sha256
    assert planted.read_bytes() == b"planted picture"
    real_hash = hashlib.sha256(b"real picture").hexdigest()
    with pytest.raises(FetchError, match="not found"):                   # not served from the cache
        resolve_image("a.JPEG", url_base=base + "/good", sha256=real_hash, download=False)
    with pytest.raises(FetchError, match="not found"):                   # nor to another hashless bank
        resolve_image("a.JPEG", url_base=base + "/good", download=False)
    good = resolve_image("a.JPEG", url_base=base + "/good", sha256=real_hash)
    assert good.read_bytes() == b"real picture" and good != planted
    assert requests == ["/evil/a.JPEG", "/good/a.JPEG"]


def test_file_url_is_refused_with_a_clear_message(tmp_path):
    (tmp_path / "x.JPEG").write_bytes(b"x")
    with pytest.raises(FetchError, match=r"only http and https URLs are fetched.*names a local file.*CASCADE_EXPLORER_IMAGES"):
        resolve_image("x.JPEG", url_base=f"file://{tmp_path}", sha256="2" * 64)


def test_cross_host_redirect_is_not_followed(tmp_path):
    hits = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/elsewhere.JPEG")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(FetchError, match="redirects to another host"):
            resolve_image("a.JPEG", url_base=f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert hits == ["/a.JPEG"]          # localhost (another host name) was never asked


def test_download_size_is_capped(server, monkeypatch, tmp_path):
    base, root, _ = server
    (root / "big.JPEG").write_bytes(b"x" * 5000)
    monkeypatch.setitem(fetch.MAX_DOWNLOAD_BYTES, "images", 1000)
    with pytest.raises(FetchError, match="over the 1,000-byte limit"):
        resolve_image("big.JPEG", url_base=base)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]   # nothing half-written kept
