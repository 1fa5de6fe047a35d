"""Resumable, verified downloads.

One file at a time: stream it into ``NAME.part`` beside its destination, resume that part
with an HTTP Range request after a dropped connection, check size and sha256, and only
then move it into place with an atomic rename. A file lock makes a second process wait
for the first instead of writing into the same part. Google Drive's large-file warning
page is followed to the file. Proxies come from the usual ``http_proxy`` / ``https_proxy``
/ ``no_proxy`` variables (urllib reads them). Nothing here knows of models.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import http.client
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path

from . import __version__
from .errors import ChecksumError, DiskFullError, DownloadError
from .units import format_bytes

#: ``FINESCALE_MIRROR=<base URL>``: fetch every file as ``<base URL>/<file name>`` instead.
MIRROR_ENV = "FINESCALE_MIRROR"

#: ``progress(done_bytes, total_bytes_or_None)``, called after every chunk.
Progress = Callable[[int, "int | None"], None]

_DRIVE_HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")
_HTML_SNIFF = 2 << 20  # a Drive warning page is a few kB; never buffer a whole file


@dataclass(frozen=True)
class DownloadOptions:
    """Network behaviour of a download.

    Attributes:
        connect_timeout: seconds to open the connection.
        read_timeout: seconds without a single byte before the transfer counts as stalled.
        retries: further attempts per URL after a transient failure (each resumes the part).
        backoff: seconds before the first retry; doubled for each further one.
        chunk_size: bytes read and written at a time (also the progress granularity).
    """

    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    retries: int = 4
    backoff: float = 1.0
    chunk_size: int = 1 << 18


@dataclass(frozen=True)
class Fetched:
    """A finished download: the file's sha256 and the URL that delivered it."""

    sha256: str
    url: str


class _Retry(Exception):
    """A transient failure: worth another attempt that resumes the part file."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def mirror_urls(urls: Sequence[str], filename: str) -> list[str]:
    """The URLs to try: ``$FINESCALE_MIRROR/<filename>`` when the mirror is set, else ``urls``."""
    base = os.environ.get(MIRROR_ENV, "").strip()
    if base:
        return [base.rstrip("/") + "/" + urllib.parse.quote(filename)]
    return list(urls)


def google_drive_url(url: str) -> str:
    """Turn a Google Drive share link (or ``gdrive:FILE_ID``) into its direct-download URL.

    Other URLs are returned unchanged.
    """
    if url.startswith("gdrive:"):
        file_id = url[len("gdrive:"):]
    else:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname not in _DRIVE_HOSTS or parts.hostname == "drive.usercontent.google.com":
            return url
        m = re.search(r"/(?:file/)?d/([A-Za-z0-9_-]{10,})", parts.path)
        query = urllib.parse.parse_qs(parts.query)
        file_id = m.group(1) if m else (query.get("id") or [""])[0]
        if not file_id:
            return url
    query = urllib.parse.urlencode({"id": file_id, "export": "download"})
    return f"https://drive.usercontent.google.com/download?{query}"


class _FormParser(HTMLParser):
    """Collects the forms (action + hidden inputs) and link targets of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []
        self._form: tuple[str, dict[str, str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = (a.get("action", ""), {})
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            self._form[1][a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


def google_drive_confirm_url(page: str, page_url: str, cookies: dict[str, str]) -> str | None:
    """The URL that fetches the file behind Google Drive's "can't scan for viruses" page.

    Understands the three forms Drive has used: a ``download-form`` whose hidden inputs
    carry ``id``, ``export``, ``confirm=t`` and ``uuid`` (drive.usercontent.google.com); a
    link with ``confirm=TOKEN``; and a ``download_warning*`` cookie holding the token.
    Returns None when the page is none of these (e.g. a quota or sign-in page).
    """
    parser = _FormParser()
    parser.feed(page)
    for action, fields in parser.forms:
        if "confirm" in fields and ("id" in fields or "id=" in action):
            target = urllib.parse.urljoin(page_url, action)
            sep = "&" if urllib.parse.urlsplit(target).query else "?"
            return target + sep + urllib.parse.urlencode(fields)
    for href in parser.links:
        if "confirm=" in href and ("export=download" in href or "/download" in href):
            return urllib.parse.urljoin(page_url, href)
    token = next((v for k, v in cookies.items() if k.startswith("download_warning")), None)
    if token:
        parts = urllib.parse.urlsplit(page_url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        query["confirm"] = token
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    return None


# --- connections with separate connect and read timeouts ----------------------------------
class _ReadTimeout:
    """Mixin: after connecting (with the connect timeout), reads use ``read_timeout``."""

    read_timeout: float
    sock: socket.socket

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.read_timeout)


class _HTTPConnection(_ReadTimeout, http.client.HTTPConnection):
    def __init__(self, *args: object, read_timeout: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.read_timeout = read_timeout


class _HTTPSConnection(_ReadTimeout, http.client.HTTPSConnection):
    def __init__(self, *args: object, read_timeout: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.read_timeout = read_timeout


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self._read_timeout = read_timeout

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        conn = functools.partial(_HTTPConnection, read_timeout=self._read_timeout)
        return self.do_open(conn, req)  # type: ignore[arg-type]


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self._read_timeout = read_timeout

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        conn = functools.partial(_HTTPSConnection, read_timeout=self._read_timeout)
        return self.do_open(conn, req, context=self._context)  # type: ignore[arg-type,attr-defined]


def _opener(options: DownloadOptions, jar: CookieJar) -> urllib.request.OpenerDirector:
    # build_opener keeps the default ProxyHandler, which honours the proxy variables.
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(jar),
        _HTTPHandler(options.read_timeout),
        _HTTPSHandler(options.read_timeout),
    )


# --- the download -----------------------------------------------------------------------------
def fetch(urls: Sequence[str], dest: str | os.PathLike[str], *, sha256: str | None = None,
          size: int | None = None, what: str | None = None, progress: Progress | None = None,
          options: DownloadOptions | None = None) -> Fetched:
    """Download the first of ``urls`` that works into ``dest``; return its sha256 and URL.

    ``what`` names the thing in error messages (default: the file name). When ``sha256``
    or ``size`` is given the bytes must match before ``dest`` appears; a mismatch deletes
    the partial file and raises :class:`ChecksumError`. A ``dest`` that already exists
    with the expected hash is returned at once. Raises :class:`DownloadError` (no network,
    HTTP error, timeout, a web page instead of the file) or :class:`DiskFullError`.
    """
    from filelock import FileLock

    opts = options or DownloadOptions()
    dest = Path(dest)
    label = what or dest.name
    if not urls:
        raise DownloadError(f"{label}: no download address is known.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    locks = dest.parent / ".locks"
    locks.mkdir(exist_ok=True)
    with FileLock(str(locks / f"{dest.name}.lock")):
        if dest.exists():
            have = sha256_file(dest)
            if sha256 is None or have == sha256.lower():
                return Fetched(have, "")
            dest.unlink()
        part = dest.with_name(dest.name + ".part")
        failures: list[DownloadError] = []
        for url in urls:
            try:
                digest = _fetch_verified(url, part, sha256, size, label, progress, opts)
            except DiskFullError:
                raise
            except DownloadError as e:
                failures.append(e)
                continue
            os.replace(part, dest)
            return Fetched(digest, url)
        first = failures[0]
        if len(failures) > 1:
            others = len(failures) - 1
            raise type(first)(f"{str(first).rstrip('.')} ({others} other source(s) failed too).")
        raise first


def _fetch_verified(url: str, part: Path, sha256: str | None, size: int | None, label: str,
                    progress: Progress | None, opts: DownloadOptions) -> str:
    resumed = part.exists() and part.stat().st_size > 0
    _fetch_with_retries(url, part, size, label, progress, opts)
    problem = _check(part, sha256, size)
    if problem and resumed:
        # The part we resumed may have been the bad piece: one clean try from zero.
        part.unlink()
        _fetch_with_retries(url, part, size, label, progress, opts)
        problem = _check(part, sha256, size)
    if problem:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{label}: the file downloaded from {_host(url)} is not the expected "
                            f"one ({problem}); it was deleted.")
    return sha256_file(part)


def _check(part: Path, sha256: str | None, size: int | None) -> str:
    got = part.stat().st_size
    if size is not None and got != size:
        return f"{got:,} bytes instead of {size:,}"
    if sha256 is not None and sha256_file(part) != sha256.lower():
        return "sha256 mismatch"
    return ""


def _fetch_with_retries(url: str, part: Path, size: int | None, label: str,
                        progress: Progress | None, opts: DownloadOptions) -> None:
    attempt = 0
    while True:
        try:
            _transfer(url, part, size, label, progress, opts, CookieJar(), depth=0)
            return
        except _Retry as e:
            if attempt >= opts.retries:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise DownloadError(
                    f"{label}: download from {_host(url)} failed{tries}: {e}."
                ) from None
            time.sleep(opts.backoff * (2 ** attempt))
            attempt += 1


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _transfer(url: str, part: Path, size: int | None, label: str, progress: Progress | None,
              opts: DownloadOptions, jar: CookieJar, depth: int) -> None:
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset == size:
        return
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    headers = {"User-Agent": f"finescale/{__version__}", "Accept": "*/*"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(google_drive_url(url), headers=headers)
    try:
        resp = _opener(opts, jar).open(request, timeout=opts.connect_timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            part.unlink()  # the part is longer than the file: start again
            raise _Retry("the partial file did not fit the server's copy") from None
        if e.code in (408, 429) or e.code >= 500:
            raise _Retry(f"HTTP {e.code} {e.reason}") from None
        what = "not found" if e.code in (404, 410) else "refused"
        raise DownloadError(f"{label}: {url} {what} (HTTP {e.code}).") from None
    except urllib.error.URLError as e:
        raise _Retry(_describe_network_error(e.reason)) from None
    except TimeoutError:
        raise _Retry(f"no connection within {opts.connect_timeout:g} s") from None
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        raise _Retry(_describe_network_error(e)) from None
    with resp:
        kind = resp.headers.get("Content-Type", "")
        if kind.startswith("text/html"):
            page = _read_page(resp, opts)
            cookies = {c.name: c.value or "" for c in jar}
            nxt = google_drive_confirm_url(page, resp.geturl(), cookies)
            if nxt is None or depth >= 2:
                raise DownloadError(f"{label}: {_host(resp.geturl())} sent a web page instead of "
                                    "the file (a download limit, a sign-in page or a wrong link).")
            return _transfer(nxt, part, size, label, progress, opts, jar, depth + 1)
        status = resp.status
        if offset and status == 206 and not _range_starts_at(resp, offset):
            part.unlink()
            raise _Retry("the server resumed at the wrong position")
        if status != 206:
            offset = 0  # the server ignored the Range header and sends everything
        total = _total_length(resp, offset)
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise ChecksumError(f"{label}: {_host(url)} offers {total:,} bytes but {size:,} are "
                                "expected; refusing a different file.")
        _ensure_space(part, (total or size or 0) - offset, label)
        _stream(resp, part, offset, total, label, progress, opts)


def _describe_network_error(reason: object) -> str:
    if isinstance(reason, socket.gaierror):
        return "the host name could not be resolved (no network connection?)"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused (no network connection or the server is down)"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "the connection timed out"
    text = str(getattr(reason, "strerror", None) or reason).strip()
    return text or type(reason).__name__


def _read_page(resp: http.client.HTTPResponse, opts: DownloadOptions) -> str:
    try:
        data = resp.read(_HTML_SNIFF)
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise _Retry(_describe_network_error(e)) from None
    return data.decode("utf-8", "replace")


def _range_starts_at(resp: http.client.HTTPResponse, offset: int) -> bool:
    m = re.match(r"bytes\s+(\d+)-", resp.headers.get("Content-Range", ""))
    return bool(m) and int(m.group(1)) == offset


def _total_length(resp: http.client.HTTPResponse, offset: int) -> int | None:
    m = re.match(r"bytes\s+\d+-\d+/(\d+)", resp.headers.get("Content-Range", ""))
    if m:
        return int(m.group(1))
    length = resp.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _ensure_space(part: Path, needed: int, label: str) -> None:
    if needed <= 0:
        return
    free = shutil.disk_usage(part.parent).free
    if free < needed:
        raise DiskFullError(f"{label}: not enough disk space in {part.parent} "
                            f"({_mb(needed)} needed, {_mb(free)} free).")


def _mb(n: int) -> str:
    return format_bytes(n)


def _stream(resp: http.client.HTTPResponse, part: Path, offset: int, total: int | None,
            label: str, progress: Progress | None, opts: DownloadOptions) -> None:
    done = offset
    with open(part, "ab" if offset else "wb") as out:
        if progress:
            progress(done, total)
        while True:
            try:
                chunk = resp.read1(opts.chunk_size)
            except TimeoutError:
                raise _Retry(f"no data for {opts.read_timeout:g} s (stalled)") from None
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                raise _Retry(f"the connection broke ({_describe_network_error(e)})") from None
            if not chunk:
                break
            try:
                out.write(chunk)
                out.flush()
            except OSError as e:
                if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                    raise DiskFullError(f"{label}: the disk holding {part.parent} is full; "
                                        "free some space and download again to resume.") from None
                raise
            done += len(chunk)
            if progress:
                progress(done, total)
    if total is not None and done < total:
        raise _Retry(f"the connection closed after {done:,} of {total:,} bytes")
