"""Find model files and bank images locally, or download and verify them (a local cache).

Lookup order for a file name: an existing path as given -> the folder named by an environment
variable (CASCADE_EXPLORER_MODELS for models, CASCADE_EXPLORER_IMAGES for images) -> the local
cache -> download from its URL with a sha256 check. Offline users and CI point the environment
variables at local copies; nothing is downloaded then.

The cache is keyed by content hash (a file without a hash by its URL, never by file name alone:
a bank without hashes must not plant a picture another bank then shows under its own label).
Downloads: http(s) only, redirects only on the same host, a size cap, atomic writes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import FetchError

MODELS_ENV = "CASCADE_EXPLORER_MODELS"
IMAGES_ENV = "CASCADE_EXPLORER_IMAGES"
CACHE_ENV = "CASCADE_EXPLORER_CACHE"
OFFLINE_ENV = "CASCADE_EXPLORER_OFFLINE"

# The ILSVRC-2012 val subset of the default bank (VeriSilicon/acuity-dataset, pinned commit).
DEFAULT_IMAGES_URL_BASE = ("https://raw.githubusercontent.com/VeriSilicon/acuity-dataset/"
                           "aded2e9f22cd8fe0745aa57356c68cb95457aad9/ILSVRC2012_VAL_SET/data/")

_CORAL = "https://github.com/google-coral/test_data/raw/104342d2d3480b3e66203073dac24f4e2dbb4c41/"
# Published locations (pinned commits) and checksums of the default bank's TFLite files.
KNOWN_MODEL_FILES: dict[str, dict[str, str]] = {
    "mobilenet_v1_0.25_128_quant.tflite": {
        "url": _CORAL + "mobilenet_v1_0.25_128_quant.tflite",
        "sha256": "cb273c23ee76374b05b9583177e28aa19744858a7679c56a250e83d0333da785"},
    "mobilenet_v1_0.5_160_quant.tflite": {
        "url": _CORAL + "mobilenet_v1_0.5_160_quant.tflite",
        "sha256": "3cc6d2ca460abd2e0f699a6d0d2550c6b61c6e3b0e27a3616e384ea74cb86f43"},
    "v3-small_224_1.0_uint8.tflite": {
        "url": ("https://github.com/weilly0912/ATU_Model_Zoo/raw/16742989779cd175d708afd02c3c748a86494027/"
                "Classification/mobilenet_v3/v3-small_224_1.0_uint8.tflite"),
        "sha256": "da341cf06fa50127a72dcbeb140ee5ee98013630aa044260a4c3d45c43fc89ce"},
    "mobilenet_v1_0.75_192_quant.tflite": {
        "url": _CORAL + "mobilenet_v1_0.75_192_quant.tflite",
        "sha256": "41daeb22fdcf947e0e5ec32373aa9df7c31f3ef45dbd0ef7b5940fbce3c20f6a"},
    "mobilenet_v2_1.0_224_quant.tflite": {
        "url": _CORAL + "mobilenet_v2_1.0_224_quant.tflite",
        "sha256": "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776"},
}


def cache_dir() -> Path:
    """Download cache: $CASCADE_EXPLORER_CACHE, else the OS cache folder (e.g. ~/.cache/cascade-explorer)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    import pooch

    return Path(pooch.os_cache("cascade-explorer"))


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _env_folder(env: str) -> Path | None:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else None


# Largest file a download may write (a hostile or broken server must not fill the disk).
MAX_DOWNLOAD_BYTES = {"images": 64 * 1024 * 1024, "models": 4 * 1024 * 1024 * 1024}
DOWNLOAD_SCHEMES = ("http", "https")


def cache_path(subdir: str, file_name: str, *, sha256: str | None, url: str | None) -> Path:
    """Where the cache keeps a file: by content for a file with a known sha256
    (SUBDIR/sha256/HEX/NAME: the same bytes whichever bank names them), else under a key of its
    download URL (SUBDIR/url/SHA256(URL)[:32]/NAME), so a file without a hash is never found by
    another bank that only shares its file name."""
    name = Path(file_name).name
    if sha256:
        return cache_dir() / subdir / "sha256" / sha256.lower() / name
    key = hashlib.sha256((url or "").encode("utf-8")).hexdigest()[:32]
    return cache_dir() / subdir / "url" / key / name


def _check_url(url: str, file_name: str, env: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme.lower() not in DOWNLOAD_SCHEMES or not parts.hostname:
        hint = (f"a {parts.scheme}: URL names a local file; put the file in a folder and set {env} to it"
                if parts.scheme.lower() == "file" else f"give an http:// or https:// URL, or set {env}")
        raise FetchError(f"{file_name}: cannot download {url!r}: only http and https URLs are fetched; {hint}")


def _opener(url: str, file_name: str):
    """A urllib opener that follows redirects only on the same host (a redirect elsewhere is refused)."""
    import urllib.request
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname

    class SameHostRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            target = urlsplit(newurl)
            if target.hostname != host or target.scheme.lower() not in DOWNLOAD_SCHEMES:
                raise FetchError(f"{file_name}: {url} redirects to another host ({newurl}); not followed. "
                                 "Use the final URL in the bank, or download the file yourself")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(SameHostRedirects)


def _download(url: str, sha256: str | None, target: Path, env: str, max_bytes: int) -> Path:
    """Download url to target (atomic: a temp file renamed in place), at most max_bytes, checked
    against sha256 when given. FetchError naming the file, the URL and what to do otherwise."""
    file_name = target.name
    if os.environ.get(OFFLINE_ENV) or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FetchError(f"{file_name} is not available locally and downloads are off "
                         f"({OFFLINE_ENV}/HF_HUB_OFFLINE set); put the file in a folder and set "
                         f"{env} to that folder")
    _check_url(url, file_name, env)
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{file_name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with _opener(url, file_name).open(url, timeout=60) as response:
                    length = response.headers.get("Content-Length")
                    if length is not None and length.isdigit() and int(length) > max_bytes:
                        raise FetchError(f"{file_name}: {url} is {int(length):,} bytes, over the "
                                         f"{max_bytes:,}-byte limit for a download; not fetched")
                    size = 0
                    for block in iter(lambda: response.read(1 << 20), b""):
                        size += len(block)
                        if size > max_bytes:
                            raise FetchError(f"{file_name}: {url} sent more than {max_bytes:,} bytes, the limit "
                                             "for a download; stopped and removed")
                        digest.update(block)
                        out.write(block)
            except FetchError:
                raise
            except Exception as error:  # urllib/HTTP/socket errors: one clear line for the user
                raise FetchError(f"{file_name}: download from {url} failed ({type(error).__name__}: {error}); "
                                 f"check the connection, or set {env} to a folder holding the file") from None
        if sha256 and digest.hexdigest() != sha256.lower():
            raise FetchError(f"{file_name}: downloaded from {url} but its sha256 does not match the expected "
                             f"{sha256} (got {digest.hexdigest()}); the file at the URL changed or the download "
                             "was corrupted (nothing was kept)")
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return target


def _resolve(file_name: str, *, env: str, subdir: str, url: str | None, sha256: str | None,
             download: bool) -> Path:
    name = Path(file_name).name
    folder = _env_folder(env)
    if folder is not None and (folder / name).is_file():
        return folder / name
    cached = cache_path(subdir, name, sha256=sha256, url=url)
    if cached.is_file() and (sha256 is None or sha256_file(cached) == sha256.lower()):
        return cached
    if url is None or not download:
        where = f"{env}={folder}" if folder is not None else f"{env} (not set)"
        raise FetchError(f"{name}: not found in {where} nor in the cache {cache_dir() / subdir}"
                         + ("" if url else " and no download URL is known for it")
                         + f"; set {env} to a folder holding {name}")
    return _download(url, sha256, cached, env, MAX_DOWNLOAD_BYTES[subdir])


def resolve_model_file(spec_path: str, *, url: str | None = None, sha256: str | None = None,
                       download: bool = True) -> Path:
    """Local path of a model file: an existing path, $CASCADE_EXPLORER_MODELS/NAME, the cache, or a download.

    Known file names (the default bank's TFLite models) carry their own URL and sha256.
    """
    path = Path(spec_path).expanduser()
    if path.is_file():
        return path
    known = KNOWN_MODEL_FILES.get(path.name, {})
    return _resolve(path.name, env=MODELS_ENV, subdir="models", url=url or known.get("url"),
                    sha256=sha256 or known.get("sha256"), download=download)


def resolve_image(image_path: str, *, url_base: str | None = None, sha256: str | None = None,
                  root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Local path of a bank image: ROOT/IMAGE_PATH, $CASCADE_EXPLORER_IMAGES/NAME, the cache, or URL_BASE + IMAGE_PATH."""
    if root is not None and (Path(root) / image_path).is_file():
        return Path(root) / image_path
    name = Path(image_path).name
    url = url_base.rstrip("/") + "/" + Path(image_path).as_posix().lstrip("/") if url_base else None
    return _resolve(name, env=IMAGES_ENV, subdir="images", url=url, sha256=sha256, download=download)
