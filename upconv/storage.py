"""Object stores (S3, GCS, Azure, HTTP, memory) through fsspec, with local-disk promises.

Every place that takes a path can take an fsspec URL instead (``s3://bucket/key``,
``gs://``, ``az://``, ``abfs://``, ``memory://``, ``http(s)://``); this module is
where such URLs are read, written and listed. It keeps the promises
:mod:`upconv.fileio` keeps on a local disk:

- an object is written whole or not at all: one PUT, or for big objects (from
  :data:`MULTIPART_THRESHOLD`) a multipart upload, which S3 shows under its key only
  once it is completed, and which is aborted on any error or Ctrl-C;
- every error is one line naming the URL, a :class:`~upconv.errors.FileAccessError`
  (missing, refused, unreachable) or :class:`~upconv.errors.BadInputError` (a URL
  or option that cannot work), with the cause in plain words;
- secrets never appear in a message (:func:`redact`).

Configuration is the ecosystem's own: the AWS credential chain and environment
(``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``... read by botocore,
which s3fs uses), fsspec's ``FSSPEC_<PROTOCOL>_<OPTION>`` variables and
configuration files, and, on top of these, the ``--storage-option KEY=VALUE``
pairs given to :func:`set_storage_options`. For S3, upconv chooses shorter
timeouts and fewer retries than botocore's (:data:`S3_DEFAULTS`) so that a
storage service that is down fails in seconds, not minutes; any of these can be
overridden by fsspec's variables or by ``--storage-option``.

fsspec and the backends (s3fs, gcsfs, adlfs) are optional (``pip install
'upconv[cloud]'``) and imported only here, when a URL is first used.

Examples
--------
>>> write_bytes("memory://doc-bucket/in/a.png", b"image")
>>> read_bytes("memory://doc-bucket/in/a.png")
b'image'
>>> list_files("memory://doc-bucket/in", recursive=False, suffixes=(".png",))
['memory://doc-bucket/in/a.png']
>>> read_bytes("memory://doc-bucket/in/b.png")
Traceback (most recent call last):
...
upconv.errors.FileAccessError: memory://doc-bucket/in/b.png: no such file
"""

from __future__ import annotations

import asyncio
import copy
import errno
import importlib
import io
import json
import math
import os
import re
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import BadInputError, FileAccessError, UpconvError

if TYPE_CHECKING:
    import fsspec

__all__ = ["is_url", "set_storage_options", "use_storage_options", "storage_options",
           "with_storage_options",
           "filesystem_options", "filesystem", "read_bytes", "read_range", "object_size",
           "write_bytes", "uploads_in_parts", "part_size_for", "largest_part", "PartUpload",
           "S3PartUpload", "AzureBlockUpload", "GcsComposeUpload", "uploading_parts",
           "exists", "existing", "same_object", "is_folder", "backend_modules", "list_files",
           "join", "remove", "forget_finalizers", "finalizers_of", "redact", "S3_DEFAULTS",
           "S3FS_RETRIES", "MULTIPART_THRESHOLD", "PART_SIZE", "MAX_PART_SIZE"]

#: A URL's protocol (``s3``, ``https``, ``simplecache`` in ``simplecache::s3://...``); at
#: least two letters, so that ``C:\\x`` and ``C://x`` stay Windows paths.
_PROTOCOL = re.compile(r"(?P<protocol>[A-Za-z][A-Za-z0-9+.\-]+)(?:://|::)")
#: Protocols that name local files: their URLs are paths for :mod:`upconv.fileio`.
_LOCAL_PROTOCOLS = {"file", "local"}
#: Read-only protocols.
_HTTP_PROTOCOLS = {"http", "https"}
_S3_PROTOCOLS = {"s3", "s3a"}
_AZURE_PROTOCOLS = {"az", "abfs", "abfss"}
_GCS_PROTOCOLS = {"gs", "gcs"}

#: What upconv's S3 filesystems get unless fsspec's configuration or a storage option
#: says otherwise: connection attempts give up after 5 s, a silent server after 20 s
#: (s3fs: 5 and 15; botocore: 60 and 60), and botocore makes 3 attempts (``max_attempts``
#: counts the retries) with its "standard" backoff, under 3 s of waiting in all, instead
#: of its "legacy" 5 attempts and up to 15 s: a stopped server (connection refused) fails
#: in 3 s or less, not 10. Listings are not cached, so that objects other processes (Dask
#: workers) wrote are seen at once.
S3_DEFAULTS: dict[str, Any] = {
    "config_kwargs": {"connect_timeout": 5, "read_timeout": 20,
                      "retries": {"max_attempts": 2, "mode": "standard"}},
    "use_listings_cache": False,
}

#: How many times s3fs runs each request (with botocore's attempts inside each run) when
#: a timeout or a dropped connection ends it: 2 instead of s3fs's 5, with which a server
#: that went away mid-upload failed only after 15 attempts (9 s on loopback). Not an
#: s3fs constructor option: set on each S3 filesystem made here.
S3FS_RETRIES = 2

#: Objects from this size on are sent to S3 as a multipart upload of :data:`PART_SIZE`
#: parts, several at a time (s3fs's own threshold and part size); smaller ones in one PUT.
MULTIPART_THRESHOLD = 100 * 2**20
PART_SIZE = 50 * 2**20
#: S3 takes at most this many parts in one upload, each of at most this many bytes.
_MAX_PARTS = 10_000
MAX_PART_SIZE = 5 * 2**30
#: An Azure block blob is made of at most 50,000 blocks (more than S3's parts), each of
#: at most 4000 MiB.
_AZURE_MAX_BLOCK_SIZE = 4000 * 2**20
#: How long an interrupted write waits for its upload to be cancelled (and aborted).
_CANCEL_WAIT_SECONDS = 10.0

#: Option names whose values are secrets (redacted from messages, never JSON-parsed).
_SECRET_NAME = re.compile(r"key|secret|token|passw|sas|credential|signature|auth|"
                          r"connection_string", re.IGNORECASE)
#: Environment variables whose values are always secrets.
_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
#: Prefixes of environment variables whose secret-looking ones are redacted too.
_SECRET_VARIABLE_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCS_", "FSSPEC_")
#: Shorter values are not redacted (they would blank out ordinary words and numbers).
_MIN_SECRET_LENGTH = 8
#: A password in a URL (``https://user:password@host``) and signed-URL query parameters.
_URL_PASSWORD = re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)[^/\s@]+@")
_URL_SECRET_PARAMETER = re.compile(
    r"(?P<keep>[?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|"
    r"token|access_token|code)=)[^&#\s]+", re.IGNORECASE)

_options: dict[str, Any] = {}
_options_lock = threading.Lock()
#: The filesystems made so far, by (protocol, options), and the process they belong to
#: (a forked child makes its own: the parent's connections are not its to use).
_filesystems: dict[tuple[str, str], Any] = {}
_filesystems_pid = os.getpid()
#: Sizes of objects, by URL, as a listing in this process (or a batch job) reported them:
#: reading an object of known size needs no request to ask it (see :func:`read_bytes`).
_known_sizes: dict[str, int] = {}


def is_url(path: str) -> bool:
    """Whether ``path`` is an fsspec URL for a storage other than the local disk.

    Examples
    --------
    >>> [is_url(p) for p in ("s3://b/k.png", "gs://b/k", "az://c/k", "memory://x",
    ...                      "https://host/a.png", "simplecache::s3://b/k")]
    [True, True, True, True, True, True]
    >>> [is_url(p) for p in ("in.png", "/data/in.png", "-", "C:\\\\x.png", "C://x.png",
    ...                      "file:///data/in.png")]
    [False, False, False, False, False, False]
    """
    match = _PROTOCOL.match(path)
    return match is not None and match["protocol"].lower() not in _LOCAL_PROTOCOLS


def _protocol(url: str) -> str:
    """The first protocol of a URL, lower-case (``s3`` for ``s3://b/k``)."""
    match = _PROTOCOL.match(url)
    if match is None:
        raise BadInputError(f"{redact(url)}: not a storage URL (expected PROTOCOL://...)")
    return match["protocol"].lower()


# --- options ------------------------------------------------------------------------------

def set_storage_options(pairs: list[str] | tuple[str, ...]) -> None:
    """Use these ``KEY=VALUE`` pairs (``--storage-option``) for every URL from now on.

    Each VALUE is read as fsspec reads its ``FSSPEC_<PROTOCOL>_<OPTION>``
    variables: as JSON when it is JSON (``true``, ``false``, ``null``, numbers,
    ``{...}`` objects), else as the string given. The values of secret-looking
    keys (``key``, ``secret``, ``token``, ``password``...) always stay strings.
    A dotted KEY sets a value inside a dictionary option:
    ``config_kwargs.connect_timeout=10`` is ``config_kwargs={"connect_timeout": 10}``.
    A later pair for the same key wins. A KEY that starts with a protocol
    (``s3.endpoint_url=...``, ``gs.token=...``) is for that protocol's
    filesystems only; the others are for every filesystem (an option a backend
    does not know is an error when one of its URLs is used: give options by
    protocol when URLs of several kinds are used together). They come on top of
    fsspec's configuration and upconv's :data:`S3_DEFAULTS`
    (:func:`filesystem_options`).

    Examples
    --------
    >>> set_storage_options(["anon=true", "endpoint_url=http://localhost:9000",
    ...                      "config_kwargs.connect_timeout=10", "secret=123456"])
    >>> storage_options()  # doctest: +NORMALIZE_WHITESPACE
    {'anon': True, 'endpoint_url': 'http://localhost:9000',
     'config_kwargs': {'connect_timeout': 10}, 'secret': '123456'}
    >>> set_storage_options(["anon"])
    Traceback (most recent call last):
    ...
    upconv.errors.BadInputError: --storage-option number 1 has no '=': expected KEY=VALUE \
(e.g. endpoint_url=http://localhost:9000)
    >>> set_storage_options([])
    """
    options: dict[str, Any] = {}
    for number, pair in enumerate(pairs, 1):
        key, equals, text = pair.partition("=")
        key = key.strip()
        # The pair is not repeated in the message: a mistyped one may hold a secret.
        if not equals:
            raise BadInputError(f"--storage-option number {number} has no '=': expected "
                                "KEY=VALUE (e.g. endpoint_url=http://localhost:9000)")
        names = key.split(".")
        if not all(name.strip() for name in names):
            raise BadInputError(f"--storage-option number {number} has no KEY before '=' "
                                "(or an empty part in a dotted KEY)")
        value = text if _SECRET_NAME.search(key) else _parse_value(text)
        target = options
        for name in names[:-1]:
            if not isinstance(target.get(name), dict):
                target[name] = {}
            target = target[name]
        target[names[-1]] = value
    use_storage_options(options)


def use_storage_options(options: Mapping[str, Any]) -> None:
    """Use ``options`` (what :func:`storage_options` returned, perhaps in another process:
    a Dask worker) for every URL from now on."""
    global _options
    with _options_lock:
        _options = copy.deepcopy(dict(options))
        _filesystems.clear()


def with_storage_options(options: Mapping[str, Any], task: Callable[..., Any],
                         *args: Any) -> Any:
    """``task(*args)`` with exactly ``options`` in use (a worker process's, Dask's or a
    batch's: the options of the command that sent the task, none if it gave none, never
    those an earlier task left in the process). The file systems made for the same options
    by an earlier task stay in use (their connections, kept alive, with them)."""
    with _options_lock:
        same = dict(options) == _options
    if not same:
        use_storage_options(options)
    return task(*args)


def storage_options() -> dict[str, Any]:
    """The storage options in use: a plain (picklable) dictionary, a copy."""
    with _options_lock:
        return copy.deepcopy(_options)


def _parse_value(text: str) -> Any:
    """A ``--storage-option`` value: JSON when it is JSON, else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``, dictionaries merged key by key (a deep copy)."""
    merged = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def filesystem_options(url: str) -> dict[str, Any]:
    """The options the filesystem for ``url`` is made with: upconv's defaults
    (:data:`S3_DEFAULTS` for S3), then fsspec's configuration for the protocol
    (``FSSPEC_<PROTOCOL>_<OPTION>`` variables, configuration files), then the
    storage options: those for every protocol, then those for this one
    (``s3.endpoint_url=...``). For libraries that make their own filesystems
    (``zarr.open(url, storage_options=filesystem_options(url))``).

    Examples
    --------
    >>> set_storage_options(["anon=true", "s3.endpoint_url=http://localhost:9000"])
    >>> options = filesystem_options("s3://bucket/x.png")
    >>> options["anon"], options["endpoint_url"], options["config_kwargs"]["connect_timeout"]
    (True, 'http://localhost:9000', 5)
    >>> filesystem_options("memory://bucket/x.png")
    {'anon': True}
    >>> set_storage_options([])
    """
    return _settled(url)[3]


def _settled(url: str) -> tuple[Any, str, Any, dict[str, Any]]:
    """fsspec, the URL's protocol, its filesystem class, and the options to make it with."""
    fsspec_module = _import_fsspec(url)
    protocol = _protocol(url)
    cls = _filesystem_class(url, protocol, fsspec_module)
    protocols = cls.protocol if isinstance(cls.protocol, (tuple, list)) else (cls.protocol,)
    return fsspec_module, protocol, cls, _options_for(fsspec_module, {protocol, *protocols})


def _options_for(fsspec_module: Any, protocols: Iterable[str]) -> dict[str, Any]:
    """The options for a filesystem class serving ``protocols`` (see
    :func:`filesystem_options`)."""
    protocols = set(protocols)
    options = copy.deepcopy(S3_DEFAULTS) if protocols & _S3_PROTOCOLS else {}
    for protocol in sorted(protocols):
        options = _merged(options, fsspec_module.config.conf.get(protocol, {}))
    given = storage_options()
    known = set(fsspec_module.available_protocols()) | set(fsspec_module.registry)
    specific = {name for name, value in given.items()
                if name in known and isinstance(value, Mapping)}
    options = _merged(options, {name: value for name, value in given.items()
                                if name not in specific})
    for protocol in sorted(protocols & specific):
        options = _merged(options, given[protocol])
    return options


# --- secrets ------------------------------------------------------------------------------

def redact(text: str) -> str:
    """``text`` with every known secret replaced by ``***``.

    The secrets are the values of secret-looking storage options (``key``,
    ``secret``, ``token``, ``password``, ``sas_token``, ``credential``...,
    inside dictionary options too) and of fsspec's configuration, the values of
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and ``AWS_ACCESS_KEY_ID``
    and of other secret-looking ``AWS_*``, ``AZURE_*``, ``GOOGLE_*``, ``GCS_*``
    and ``FSSPEC_*`` variables, passwords written into URLs, and the signatures
    and tokens of signed URLs. Values shorter than 8 characters are left alone (a local
    server's ``test`` or ``minio`` would otherwise blank those words out of every name).

    Examples
    --------
    >>> set_storage_options(["secret=Very/Secret+Value"])
    >>> redact("s3://b/x.png: signed with Very/Secret+Value")
    's3://b/x.png: signed with ***'
    >>> redact("https://user:pw1234@host/a.png?X-Amz-Signature=abc123&size=2")
    'https://user:***@host/a.png?X-Amz-Signature=***&size=2'
    >>> set_storage_options([])
    """
    secrets: set[str] = set()
    _collect_secrets(storage_options(), secrets, False)
    config = sys.modules.get("fsspec.config")
    if config is not None:
        _collect_secrets(getattr(config, "conf", {}), secrets, False)
    for name, value in os.environ.items():
        if name in _SECRET_VARIABLES or (name.startswith(_SECRET_VARIABLE_PREFIXES)
                                         and _SECRET_NAME.search(name)):
            secrets.add(value)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_LENGTH:
            text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\g<keep>***@", text)
    return _URL_SECRET_PARAMETER.sub(r"\g<keep>***", text)


def _collect_secrets(options: Any, secrets: set[str], secret: bool) -> None:
    """Add the string values under secret-looking keys of nested ``options`` to ``secrets``."""
    if isinstance(options, Mapping):
        for key, value in options.items():
            _collect_secrets(value, secrets, secret or bool(_SECRET_NAME.search(str(key))))
    elif isinstance(options, (list, tuple)):
        for value in options:
            _collect_secrets(value, secrets, secret)
    elif secret and isinstance(options, str):
        secrets.add(options)


# --- filesystems --------------------------------------------------------------------------

def _import_fsspec(url: str) -> Any:
    try:
        import fsspec
    except ImportError:
        raise BadInputError(f"{redact(url)}: {_protocol(url)}:// URLs need fsspec: "
                            "pip install 'upconv[cloud]'") from None
    return fsspec


def _missing_backend(url: str, protocol: str, exc: ImportError) -> BadInputError:
    """The error for a protocol whose package (s3fs, gcsfs, adlfs...) is not installed."""
    cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
    package = getattr(cause, "name", None)
    if not package:
        registry = importlib.import_module("fsspec.registry")  # fsspec.registry: a mapping
        known = registry.known_implementations.get(protocol, {})
        package = known.get("class", protocol).split(".")[0]
    package = package.split(".")[0]
    install = ("pip install 'upconv[cloud]'" if package in ("fsspec", "s3fs")
               else f"pip install 'upconv[cloud]' {package}")
    return BadInputError(f"{redact(url)}: {protocol}:// URLs need {package}: {install}")


def _filesystem_class(url: str, protocol: str, fsspec_module: Any) -> Any:
    try:
        return fsspec_module.get_filesystem_class(protocol)
    except ImportError as exc:
        raise _missing_backend(url, protocol, exc) from None
    except ValueError:
        raise BadInputError(f"{redact(url)}: unknown storage protocol {protocol!r}") from None


def backend_modules(urls: Iterable[str]) -> list[str]:
    """The modules that read and write ``urls``: this one and each protocol's fsspec
    backend (``s3fs`` for ``s3://``...), for a process to import ahead of need (the server
    that worker processes are forked from). Unknown protocols are left out, not errors.

    Examples
    --------
    >>> backend_modules(["memory://b/in", "memory://b/out", "nosuch://x"])
    ['upconv.storage', 'fsspec.implementations.memory']
    """
    modules = [__name__]
    try:
        registry = importlib.import_module("fsspec.registry")
    except ImportError:
        return modules
    for url in urls:
        match = _PROTOCOL.match(url)
        if match is None:
            continue
        protocol = match["protocol"].lower()
        cls = registry.registry.get(protocol)
        name = (cls.__module__ if cls is not None else
                registry.known_implementations.get(protocol, {}).get("class", ""
                                                                     ).rpartition(".")[0])
        if name and name not in modules:
            modules.append(name)
    return modules


def same_object(first: str, second: str) -> bool:
    """Whether two URLs name the same object: the same filesystem class and path, whatever
    alias of the protocol each uses (``s3a://b/k`` is ``s3://b/k``). Nothing is fetched.

    Examples
    --------
    >>> same_object("memory://b/in/a.png", "memory://b/in/a.png/")
    True
    >>> same_object("memory://b/in/a.png", "memory://b/out/a.png")
    False
    """
    if first.rstrip("/") == second.rstrip("/"):
        return True
    try:
        (_, _, first_class, _), (_, _, second_class, _) = _settled(first), _settled(second)
    except UpconvError:  # an unknown protocol or a missing backend: the text decides
        return False
    return first_class is second_class and (
        first_class._strip_protocol(first).rstrip("/")
        == second_class._strip_protocol(second).rstrip("/"))


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``url`` and the URL's path in it.

    Made with :func:`fsspec.core.url_to_fs` and the options of
    :func:`set_storage_options` (on top of fsspec's configuration and
    :data:`S3_DEFAULTS`), once per protocol and options in each process.

    Examples
    --------
    >>> fs, path = filesystem("memory://bucket/in/a.png")
    >>> type(fs).__name__, path
    ('MemoryFileSystem', '/bucket/in/a.png')
    """
    global _filesystems_pid
    fsspec_module, protocol, cls, options = _settled(url)
    try:
        if "::" in url:  # a chain (simplecache::s3://...): fsspec shares the options out
            return fsspec_module.core.url_to_fs(url, **options)
        key = (protocol, json.dumps([options, cls._get_kwargs_from_urls(url)],
                                    sort_keys=True, default=repr))
        with _options_lock:
            if _filesystems_pid != os.getpid():
                _filesystems.clear()
                _filesystems_pid = os.getpid()
            fs = _filesystems.get(key)
        if fs is None:
            fs, path = fsspec_module.core.url_to_fs(url, **options)
            if _is_s3(fs):  # s3fs: not a constructor option
                fs.retries = S3FS_RETRIES
            with _options_lock:
                _filesystems[key] = fs
            return fs, path
        return fs, fs._strip_protocol(url)
    except ImportError as exc:
        raise _missing_backend(url, protocol, exc) from None
    except UpconvError:
        raise
    except Exception as exc:  # an option the backend does not take, a malformed URL
        raise BadInputError(_one_line(f"{url}: cannot use these storage options or this "
                                      f"URL ({_exception_text(exc)})")) from None


# --- operations ---------------------------------------------------------------------------

def read_bytes(url: str) -> bytes:
    """The whole object at ``url`` (empty objects too), or a one-line error naming it.

    Examples
    --------
    >>> write_bytes("memory://doc-read/x.bin", b"\\x00\\x01")
    >>> read_bytes("memory://doc-read/x.bin")
    b'\\x00\\x01'
    """
    fs, path = filesystem(url)
    size = _known_sizes.pop(url, None)  # (once: a long-lived worker reads many objects)
    try:
        if _is_s3(fs) and size is not None and size <= fs.default_block_size:
            # s3fs asks an object's size (a HEAD request) before its GET, to read an
            # object bigger than its block size in concurrent ranges; a size known from
            # a listing is not asked again: a batch of images sends one request per input.
            return fs.cat_file(path, max_concurrency=1)
        return fs.cat_file(path)
    except Exception as exc:
        raise _read_failure(fs, url, path, exc) from None


def read_range(url: str, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of the object at ``url`` (one ranged GET), or a one-line
    error naming it: how a big ``.npy`` in a bucket is read a band of rows at a time.

    Examples
    --------
    >>> write_bytes("memory://doc-range/x.bin", b"abcdef")
    >>> read_range("memory://doc-range/x.bin", 1, 4)
    b'bcd'
    """
    if end <= start:  # (s3fs would ask for "bytes=3-2", which S3 answers with everything)
        return b""
    fs, path = filesystem(url)
    try:
        data = fs.cat_file(path, start=start, end=end)
    except Exception as exc:
        raise _read_failure(fs, url, path, exc) from None
    if len(data) != end - start:
        raise FileAccessError(redact(f"{url}: changed while being read ({end - start} bytes "
                                     f"asked from byte {start}, {len(data)} read)"))
    return data


def object_size(url: str) -> int | None:
    """The size of the object at ``url`` in bytes (None when the service does not say,
    as an HTTP server may not), or a one-line error naming it.

    Examples
    --------
    >>> write_bytes("memory://doc-object-size/x.bin", b"abc")
    >>> object_size("memory://doc-object-size/x.bin")
    3
    """
    known = _known_sizes.get(url)
    if known is not None:
        return known
    fs, path = filesystem(url)
    try:
        info = fs.info(path)
    except Exception as exc:
        raise _read_failure(fs, url, path, exc) from None
    if info.get("type") == "directory":
        raise FileAccessError(redact(f"{url}: is a folder, not a file"))
    size = info.get("size")
    return int(size) if size is not None else None


def _read_failure(fs: Any, url: str, path: str, exc: BaseException) -> UpconvError:
    """The one-line error for ``exc``, raised reading the object at ``url``."""
    if isinstance(exc, IsADirectoryError) or (
            isinstance(exc, FileNotFoundError) and not _names_bucket(exc)
            and _quietly_is_folder(fs, path)):
        return FileAccessError(redact(f"{url}: is a folder, not a file"))
    return _failure(url, "read", exc)


def known_size(url: str) -> int | None:
    """The size of the object at ``url`` as a listing in this process reported it
    (:func:`list_files`), or as :func:`expect_size` was told; None if unknown, or once
    :func:`read_bytes` has read the object (a long-lived worker keeps no list of them).

    Examples
    --------
    >>> write_bytes("memory://doc-size/in/a.png", b"png")
    >>> list_files("memory://doc-size/in", recursive=False, suffixes=())
    ['memory://doc-size/in/a.png']
    >>> known_size("memory://doc-size/in/a.png")
    3
    """
    return _known_sizes.get(url)


def expect_size(url: str, size: int | None) -> None:
    """Tell :func:`read_bytes` the size of the object at ``url`` (from a listing made in
    another process: a batch's worker is given its input's), so that reading it needs no
    request for its size. A wrong size costs a request or concurrency, never data."""
    if size is not None:
        _known_sizes[url] = size


def write_bytes(url: str, data: bytes) -> None:
    """Store ``data`` as the object at ``url``, replacing any: whole, or not at all.

    Up to :data:`MULTIPART_THRESHOLD` bytes go in one PUT, which the service
    stores whole or not at all. Bigger objects go to S3 as a multipart upload:
    its parts are invisible until the upload is completed, and an upload that
    fails (an error, the service going away) or is interrupted (Ctrl-C) is
    aborted, its parts deleted. Either way an existing object stays as it was
    unless the new one is complete. ``http(s)://`` URLs are read-only.

    Examples
    --------
    >>> write_bytes("memory://doc-write/out.png", b"png")
    >>> exists("memory://doc-write/out.png")
    True
    >>> write_bytes("https://example.org/out.png", b"png")
    Traceback (most recent call last):
    ...
    upconv.errors.BadInputError: https://example.org/out.png: http(s) URLs are read-only
    """
    fs, path = _object_to_write(url)
    try:
        if getattr(fs, "async_impl", False) and getattr(fs, "loop", None) is not None:
            _run_cancellably(fs.loop, _upload(fs, path, bytes(data)))
        else:
            fs.pipe_file(path, bytes(data))
    except Exception as exc:
        raise _failure(url, "write", exc) from None


def _object_to_write(url: str) -> tuple[Any, str]:
    """The filesystem and path of an object to be written at ``url``, or a one-line error:
    a read-only protocol, a folder or a bucket is no object to write."""
    refuse_read_only(url)
    if url.endswith("/"):
        raise BadInputError(redact(f"{url}: names a folder; give an object name"))
    fs, path = filesystem(url)
    if _split_path(fs, path)[1] == "":
        raise BadInputError(redact(f"{url}: names a bucket; give an object name"))
    return fs, path


def uploads_in_parts(url: str) -> bool:
    """Whether an object at ``url`` can be written as parts sent from anywhere and made
    whole at the end (:func:`uploading_parts`): an S3 multipart upload, an Azure block
    blob's block list, or a GCS composite object (a parallel composite upload).

    Examples
    --------
    >>> uploads_in_parts("s3://bucket/big.npy"), uploads_in_parts("az://box/big.npy")
    (True, True)
    >>> uploads_in_parts("gs://bucket/big.npy"), uploads_in_parts("memory://b/big.npy")
    (True, False)
    """
    return "::" not in url and _protocol(url) in (
        _S3_PROTOCOLS | _AZURE_PROTOCOLS | _GCS_PROTOCOLS)


def part_size_for(total: int) -> int:
    """The size of the parts of an upload of ``total`` bytes: :data:`PART_SIZE`, or more
    when that would make more parts than S3 takes (Azure takes more).

    Examples
    --------
    >>> part_size_for(10) == PART_SIZE
    True
    >>> part_size_for(10_000 * PART_SIZE + 1) > PART_SIZE
    True
    """
    return max(PART_SIZE, math.ceil(total / _MAX_PARTS))


def largest_part(url: str) -> tuple[int, str]:
    """The largest part an upload to ``url`` takes, in bytes, and in words.

    Examples
    --------
    >>> largest_part("s3://bucket/big.npy")[1], largest_part("az://box/big.npy")[1]
    ("S3's 5 GiB", "Azure's 4000 MiB")
    >>> largest_part("gs://bucket/big.npy")[1]
    "5 GiB (upconv's own limit for a GCS part)"
    """
    if _protocol(url) in _AZURE_PROTOCOLS:
        return _AZURE_MAX_BLOCK_SIZE, "Azure's 4000 MiB"
    if _protocol(url) in _GCS_PROTOCOLS:  # (each part is held in memory whole)
        return MAX_PART_SIZE, "5 GiB (upconv's own limit for a GCS part)"
    return MAX_PART_SIZE, "S3's 5 GiB"


class PartUpload:
    """An upload under way whose parts can be sent from any process, a Dask worker's
    included (it pickles, and each process makes its own connection with the command's
    storage options), and which makes the object only once every part is there
    (:func:`uploading_parts`)."""

    url: str

    def send(self, number: int, data: BinaryIO) -> dict[str, Any]:
        """Send part ``number`` (from 1; every part but the last at least 5 MiB, as S3
        asks), read from ``data`` (a seekable file, as botocore reads a body more than
        once); sending a part again replaces it. Returns what :meth:`complete` needs."""
        raise NotImplementedError

    def abort(self) -> None:
        """Give the upload up: no object is made of it, and an object already under the
        key stays as it was (quietly: the failure that made us give up is the one to
        report)."""
        raise NotImplementedError

    def complete(self, parts: list[dict[str, Any]]) -> None:
        """Make the object of the ``parts`` sent (:meth:`send`'s answers, in any order)."""
        raise NotImplementedError


@dataclass(frozen=True)
class S3PartUpload(PartUpload):
    """An S3 multipart upload: its parts are invisible until it is completed, and
    aborting it deletes them."""

    url: str
    upload_id: str

    def send(self, number: int, data: BinaryIO) -> dict[str, Any]:
        try:
            sent = _object_request(self.url, "upload_part", UploadId=self.upload_id,
                                   PartNumber=number, Body=data)
        except Exception as exc:
            raise _failure(self.url, "write", exc) from None
        return {"PartNumber": number, "ETag": sent["ETag"]}

    def abort(self) -> None:
        """Abort the upload, deleting its parts (quietly: a service gone away keeps them
        invisible, and a lifecycle rule for incomplete uploads deletes them). A part still
        being sent meanwhile would outlive the abort, as S3 warns: a job on Dask stops its
        tasks first (:func:`upconv.cluster.stop_tasks`)."""
        try:
            _object_request(self.url, "abort_multipart_upload", UploadId=self.upload_id)
        except Exception:  # noqa: BLE001 - the failure that made us abort is the one to report
            pass

    def complete(self, parts: list[dict[str, Any]]) -> None:
        try:
            _object_request(self.url, "complete_multipart_upload", UploadId=self.upload_id,
                            MultipartUpload={"Parts": sorted(
                                parts, key=lambda part: part["PartNumber"])})
        except Exception as exc:
            raise _failure(self.url, "write", exc) from None


@dataclass(frozen=True)
class AzureBlockUpload(PartUpload):
    """An Azure block blob sent a block at a time: each part is staged as a block of the
    blob (uncommitted blocks are invisible: the blob, if there is one, stays as it was),
    and committing the list of blocks makes the blob, whole, in one request. Its block
    IDs are this upload's own (``token``, then the part's number), so that uploads to
    the same name do not mix their blocks."""

    url: str
    token: str

    def block_id(self, number: int) -> str:
        """The ID of part ``number``'s block: 32 characters, as adlfs's own (every block of
        a blob, its uncommitted ones included, must have an ID of the same length).

        Examples
        --------
        >>> AzureBlockUpload("az://box/a.npy", "f00d" * 8).block_id(12)
        'f00df00df00df00df00df00df0000012'
        """
        return f"{self.token[:26]}{number:06d}"

    def send(self, number: int, data: BinaryIO) -> dict[str, Any]:
        body = data.getbuffer() if isinstance(data, io.BytesIO) else data.read()
        try:
            _azure_blob_request(self.url, "stage_block", block_id=self.block_id(number),
                                data=body, length=len(body))
        except Exception as exc:
            raise _failure(self.url, "write", exc) from None
        return {"PartNumber": number, "BlockId": self.block_id(number)}

    def abort(self) -> None:
        """Nothing to send: Azure keeps no request to drop staged blocks, which are never
        part of the blob unless committed, and which it deletes itself within a week
        (or at the blob's next commit)."""

    def complete(self, parts: list[dict[str, Any]]) -> None:
        from azure.storage.blob import BlobBlock

        if not parts:
            raise ValueError("an upload of no parts")

        blocks = [BlobBlock(part["BlockId"])
                  for part in sorted(parts, key=lambda part: part["PartNumber"])]
        try:
            # (the metadata adlfs gives every blob it writes, so that it lists it as a file)
            _azure_blob_request(self.url, "commit_block_list", block_list=blocks,
                                metadata={"is_directory": "false"})
        except Exception as exc:
            raise _failure(self.url, "write", exc) from None


#: A GCS compose request takes at most this many source objects.
_GCS_MOST_COMPOSED = 32


@dataclass(frozen=True)
class GcsComposeUpload(PartUpload):
    """A GCS object sent in parts as a *parallel composite upload* (as ``gcloud storage
    cp`` and ``gsutil`` send big files): each part an object of its own in a folder
    beside the final one (``.upconv-parts-TOKEN/``), the object made of them, whole, by
    compose requests (32 parts at most each: more go through intermediate objects), and
    every part deleted after, or when the upload is given up. While it runs, and if the
    process is killed, the parts are objects anyone may list; nothing is ever under the
    final name but the old object or the whole new one. (Parts of storage classes with a
    minimum storage duration are charged for it, as Google's documentation of composite
    uploads warns.)"""

    url: str
    token: str

    def part_url(self, name: str) -> str:
        """The URL of one of the upload's temporary objects.

        Examples
        --------
        >>> GcsComposeUpload("gs://bucket/out/big.npy", "f00d").part_url("000001")
        'gs://bucket/out/.upconv-parts-f00d/000001'
        """
        folder, _, _ = self.url.rpartition("/")
        return f"{folder}/.upconv-parts-{self.token}/{name}"

    def send(self, number: int, data: BinaryIO) -> dict[str, Any]:
        fs, path = filesystem(self.part_url(f"{number:06d}"))
        try:
            _run_cancellably(fs.loop, fs._pipe_file(path, data.read()))
        except Exception as exc:
            raise _failure(self.url, "write", exc) from None
        return {"PartNumber": number, "Path": path}

    def abort(self) -> None:
        """Delete the upload's parts (quietly: parts a service gone away keeps are in their
        folder, for a lifecycle rule or a person to delete)."""
        try:
            self._delete_parts()
        except Exception:  # noqa: BLE001 - the failure that made us give up is the one to report
            pass

    def _delete_parts(self) -> None:
        """Delete every object in the upload's folder, listed as it is named (no pattern:
        a folder's name may hold ``*``, ``?`` or ``[``)."""
        fs, folder = filesystem(self.part_url(""))

        async def delete() -> None:
            parts = await fs._find(folder.rstrip("/"))
            await asyncio.gather(*(fs._rm_file(part) for part in parts))

        _run_cancellably(fs.loop, delete())

    def complete(self, parts: list[dict[str, Any]]) -> None:
        if not parts:
            raise ValueError("an upload of no parts")
        fs, path = filesystem(self.url)
        bucket, key = _split_path(fs, path)
        sources = [part["Path"] for part in sorted(parts, key=lambda part: part["PartNumber"])]

        async def compose(target: str, names: list[str]) -> None:
            # (gcsfs's merge, with the content type a whole upload gets)
            await fs._call("POST", "b/{}/o/{}/compose", bucket, _split_path(fs, target)[1],
                           headers={"Content-Type": "application/json"},
                           json={"kind": "storage#composeRequest",
                                 "sourceObjects": [{"name": _split_path(fs, name)[1]}
                                                   for name in names],
                                 "destination": {"name": _split_path(fs, target)[1],
                                                 "bucket": bucket,
                                                 "contentType": "application/octet-stream"}})

        async def compose_all() -> None:
            names, level = sources, 0
            while len(names) > _GCS_MOST_COMPOSED:  # a round of intermediate objects
                groups = [names[index:index + _GCS_MOST_COMPOSED]
                          for index in range(0, len(names), _GCS_MOST_COMPOSED)]
                targets = [filesystem(self.part_url(f"composed-{level}-{index:06d}"))[1]
                           for index in range(len(groups))]
                await asyncio.gather(*(compose(target, group)
                                       for target, group in zip(targets, groups, strict=True)))
                names, level = targets, level + 1
            await compose(path, names)

        try:
            _run_cancellably(fs.loop, compose_all())
        except Exception as exc:
            raise _failure(self.url, "write", exc) from None
        finally:
            fs.invalidate_cache(path)
        try:
            self._delete_parts()
        except Exception as exc:  # noqa: BLE001 - the object is made: a warning, not a failure
            import warnings

            warnings.warn(redact(f"{self.url}: written, but its parts could not be deleted "
                                 f"({_exception_text(exc)}): delete "
                                 f"{self.part_url('')} yourself"), stacklevel=2)


@contextmanager
def uploading_parts(url: str) -> Iterator[PartUpload]:
    """An upload of parts to ``url``, sent from anywhere; the caller completes it
    (:meth:`PartUpload.complete`, or later: :func:`upconv.fileio.finish_upload`).

    Until it is completed, nothing is under the key (an object already there stays as it
    was). If the block fails or is interrupted (Ctrl-C), the upload is given up
    (:meth:`PartUpload.abort`). Only for :func:`uploads_in_parts` URLs.
    """
    upload = start_upload(url)
    try:
        yield upload
    except BaseException:
        upload.abort()
        raise


def start_upload(url: str) -> PartUpload:
    """An upload of parts to ``url`` begun (see :func:`uploading_parts`, which gives it
    up on failure; a caller of this one does so itself).

    Examples
    --------
    >>> start_upload("memory://doc-upload/x")
    Traceback (most recent call last):
    ...
    ValueError: memory://doc-upload/x: not an S3, Azure or GCS URL
    """
    _object_to_write(url)
    if not uploads_in_parts(url):
        raise ValueError(f"{url}: not an S3, Azure or GCS URL")
    if _protocol(url) in _AZURE_PROTOCOLS | _GCS_PROTOCOLS:
        filesystem(url)  # (the backend's one-line error, if it is not installed)
        kind = AzureBlockUpload if _protocol(url) in _AZURE_PROTOCOLS else GcsComposeUpload
        return kind(url, uuid.uuid4().hex)
    try:
        started = _object_request(url, "create_multipart_upload")
    except Exception as exc:
        raise _failure(url, "write", exc) from None
    return S3PartUpload(url, started["UploadId"])


def streams_in_parts(url: str) -> bool:
    """Whether an object at ``url`` can be written a piece at a time with nothing but the
    part being filled held (:class:`StreamedObject`): an S3 multipart upload or an Azure
    block blob, whose parts are invisible until the object is made. (GCS's composite
    uploads put each part beside the object as an object of its own: not for the many
    objects of one store.)

    Examples
    --------
    >>> streams_in_parts("s3://bucket/a.zarr/c/0/0"), streams_in_parts("gs://b/a.zarr/c/0")
    (True, False)
    """
    return uploads_in_parts(url) and _protocol(url) not in _GCS_PROTOCOLS


class StreamedObject:
    """An object written a piece at a time (as :class:`upconv.zarr_local.ChunkFile` writes
    a file), whole or not at all: the pieces are gathered into parts of ``part_size``
    bytes (default :data:`PART_SIZE`), each sent as it fills (an S3 multipart upload, an
    Azure block blob: :func:`streams_in_parts`), and :meth:`commit` makes the object of
    them; one that fits in a single part is sent in one PUT instead. :meth:`discard`
    gives it up (the parts sent are deleted, and nothing under the key changes). Only
    the part being filled is held. A process killed mid-object leaves its upload
    unfinished: invisible, and deleted by the bucket's lifecycle rule for incomplete
    uploads (or Azure's own clean-up of uncommitted blocks within a week).

    Examples
    --------
    >>> streamed = StreamedObject("memory://doc-streamed/chunk")
    >>> streamed.write([b"spam", b" "])
    >>> streamed.write(b"eggs")
    >>> streamed.commit()
    >>> read_bytes("memory://doc-streamed/chunk")
    b'spam eggs'
    """

    writer = None  # (written here, not by a writer thread: see ChunkFile.writer)

    def __init__(self, url: str, part_size: int | None = None) -> None:
        self.url, self.part_size = url, PART_SIZE if part_size is None else part_size
        self.part = io.BytesIO()
        self.upload: PartUpload | None = None
        self.sent: list[dict[str, Any]] = []
        self.committed = False

    def write(self, data: object, kept: bool = False) -> None:
        """Add the next bytes (a bytes-like object, or a list of them), sending each part
        as it fills; ``kept`` is ignored (the bytes are copied before this returns)."""
        for piece in data if isinstance(data, list) else [data]:
            view = memoryview(piece).cast("B")
            while view.nbytes:
                room = self.part_size - self.part.tell()
                self.part.write(view[:room])
                view = view[room:]
                if self.part.tell() == self.part_size:
                    self._send_part()

    def _send_part(self) -> None:
        if self.upload is None:
            self.upload = start_upload(self.url)
        self.part.seek(0)
        self.sent.append(self.upload.send(len(self.sent) + 1, self.part))
        self.part = io.BytesIO()

    def commit(self) -> None:
        """Make the object of what was written."""
        assert not self.committed
        if self.upload is None:
            write_bytes(self.url, self.part.getvalue())  # (the part's bytes, not a copy)
        else:
            if self.part.tell():
                self._send_part()
            self.upload.complete(self.sent)
        self.part = io.BytesIO()
        self.committed = True

    def discard(self) -> None:
        """Give the object up, unless committed (the parts sent are deleted)."""
        if self.upload is not None and not self.committed:
            self.upload.abort()
            self.upload = None
        self.part = io.BytesIO()


def _azure_blob_request(url: str, method: str, **kwargs: Any) -> Any:
    """One request to the Azure blob at ``url`` (a method of azure-storage-blob's
    ``BlobClient``, through adlfs's connection), waited for here, Ctrl-C cancelling it;
    what the filesystem remembers of the blob is forgotten after it."""
    fs, path = filesystem(url)
    container, blob = _split_path(fs, path)

    # (the timeouts adlfs gives each of its own requests, from the storage options)
    kwargs = {**getattr(fs, "_timeout_kwargs", {}), **kwargs}

    async def request() -> Any:
        async with fs.service_client.get_blob_client(container, blob) as client:
            return await getattr(client, method)(**kwargs)

    try:
        return _run_cancellably(fs.loop, request())
    finally:
        fs.invalidate_cache(path)


def _object_request(url: str, method: str, **kwargs: Any) -> Any:
    """One S3 request about the object at ``url`` (its ``Bucket`` and ``Key`` filled in),
    waited for here, Ctrl-C cancelling it (:func:`_run_cancellably`); what the filesystem
    remembers of the object is forgotten after it."""
    fs, path = filesystem(url)
    bucket, key = _split_path(fs, path)
    try:
        return _run_cancellably(fs.loop, fs._call_s3(method, Bucket=bucket, Key=key, **kwargs))
    finally:
        fs.invalidate_cache(path)


def exists(url: str) -> bool:
    """Whether ``url`` names an object, or a folder (a prefix with objects, a bucket).

    A missing bucket is False; a refused or unreachable service is an error.

    Examples
    --------
    >>> write_bytes("memory://doc-exists/a/b.png", b"png")
    >>> exists("memory://doc-exists/a/b.png"), exists("memory://doc-exists/a/c.png")
    (True, False)
    """
    fs, path = filesystem(url)
    try:
        if _split_path(fs, path)[1] == "":
            return bool(fs.isdir(path))
        fs.info(path)
        return True
    except FileNotFoundError:
        return False
    except Exception as exc:
        raise _failure(url, "check", exc) from None


def missing_bucket(url: str) -> str | None:
    """The bucket of ``url`` if the service says it does not exist; None where it exists,
    where that cannot be told (no right to ask), and for stores without buckets.

    Examples
    --------
    >>> missing_bucket("memory://doc-bucket/a.png") is None
    True
    """
    fs, path = filesystem(url)
    bucket, _ = _split_path(fs, path)
    if not bucket:
        return None
    try:
        fs.info(bucket)
    except FileNotFoundError:
        return bucket
    except Exception:
        return None
    return None


#: From this many URLs under one prefix on, :func:`existing` lists the prefix once rather
#: than asking about each URL (one request per URL, two for a missing object on S3). A
#: listing costs one request per thousand names at the prefix's level.
LISTING_FROM = 10


def existing(urls: Iterable[str]) -> set[str]:
    """Those of ``urls`` that exist, as :func:`exists` says each (an object, or a folder).

    URLs are grouped by the prefix (folder) they are in; a prefix with
    :data:`LISTING_FROM` of them or more is listed once, one level (objects and the
    folders under it), instead of a request about each: for a batch's outputs, one
    request instead of hundreds. A missing prefix or bucket holds nothing.

    Examples
    --------
    >>> for name in ("a.png", "b.png", "sub/c.png"):
    ...     write_bytes(f"memory://doc-existing/out/{name}", b"png")
    >>> sorted(existing([f"memory://doc-existing/out/{name}"
    ...                  for name in ("a.png", "sub", "x.png")] * 5))
    ['memory://doc-existing/out/a.png', 'memory://doc-existing/out/sub']
    """
    groups: dict[str, list[str]] = {}
    for url in dict.fromkeys(urls):
        parent = url.rstrip("/").rsplit("/", 1)[0] if not url.endswith("://") else url
        groups.setdefault(parent, []).append(url)
    found = set()
    for parent, members in groups.items():
        if len(members) < LISTING_FROM or _protocol(parent) in _HTTP_PROTOCOLS \
                or parent.endswith(":/") or "::" in parent:
            found.update(url for url in members if exists(url))
            continue
        fs, path = filesystem(parent)
        try:
            names = {name.rstrip("/") for name in fs.ls(path, detail=False)}
        except FileNotFoundError:
            names = set()
        except Exception as exc:
            raise _failure(parent, "list", exc) from None
        found.update(url for url in members
                     if fs._strip_protocol(url).rstrip("/") in names)
    return found


def is_folder(url: str) -> bool:
    """Whether ``url`` is a folder: a prefix with objects under it, or a bucket.

    ``http(s)://`` URLs name single files, never folders.

    Examples
    --------
    >>> write_bytes("memory://doc-folder/a/b.png", b"png")
    >>> is_folder("memory://doc-folder/a"), is_folder("memory://doc-folder/a/b.png")
    (True, False)
    """
    if _protocol(url) in _HTTP_PROTOCOLS:
        filesystem(url)  # a missing backend is still the error it is elsewhere
        return False
    fs, path = filesystem(url)
    try:
        return bool(fs.isdir(path))
    except FileNotFoundError:
        return False
    except Exception as exc:
        raise _failure(url, "list", exc) from None


def list_files(url: str, recursive: bool, suffixes: tuple[str, ...]) -> list[str]:
    """The objects under the prefix ``url`` whose names end with one of ``suffixes``
    (any case; ``()``: every object), as full URLs, sorted.

    Without ``recursive`` only the prefix's own level is listed, as a folder's
    files without its subfolders'. A prefix with no objects under it gives an
    empty list (object stores have no empty folders); a missing bucket is an error.

    Examples
    --------
    >>> for name in ("in/a.PNG", "in/b.jpg", "in/sub/c.png", "other.png"):
    ...     write_bytes(f"memory://doc-list/{name}", b"x")
    >>> list_files("memory://doc-list/in", recursive=False, suffixes=(".png",))
    ['memory://doc-list/in/a.PNG']
    >>> list_files("memory://doc-list/in/", recursive=True, suffixes=(".png",))
    ['memory://doc-list/in/a.PNG', 'memory://doc-list/in/sub/c.png']
    """
    _refuse_listing(url)
    fs, path = filesystem(url)
    base = path.rstrip("/")
    wanted = tuple(suffix.lower() for suffix in suffixes)
    try:
        found = fs.find(path, maxdepth=None if recursive else 1, withdirs=False,
                        detail=True)
        if not found:
            bucket, _ = _split_path(fs, path)
            if bucket and not fs.isdir(bucket):
                raise FileNotFoundError(errno.ENOENT, "The specified bucket does not exist")
    except Exception as exc:
        raise _failure(url, "list", exc) from None
    urls = []
    for name, info in found.items():
        relative = name[len(base):].lstrip("/") if name.startswith(base + "/") else None
        if not relative or relative.endswith("/"):  # the prefix itself, folder markers
            continue
        if not recursive and "/" in relative:  # (adlfs's find does not heed maxdepth)
            continue
        if not wanted or relative.lower().endswith(wanted):
            urls.append(join(url, relative))
            if isinstance(info.get("size"), int):
                _known_sizes[urls[-1]] = info["size"]
    return sorted(urls)


def join(url: str, relative: str) -> str:
    """``relative`` (a path with ``/`` or this system's separator) under the prefix ``url``.

    Examples
    --------
    >>> join("s3://bucket/out", "sub/a.png"), join("s3://bucket/out/", "a.png")
    ('s3://bucket/out/sub/a.png', 's3://bucket/out/a.png')
    >>> join("memory://", "a.png")
    'memory://a.png'
    """
    for separator in (os.sep, os.altsep):
        if separator and separator != "/":
            relative = relative.replace(separator, "/")
    relative = relative.lstrip("/")
    if not relative:
        return url
    stem = url if url.endswith("://") else url.rstrip("/")
    return stem + relative if stem.endswith("://") else f"{stem}/{relative}"


def remove(url: str) -> None:
    """Delete the object at ``url``; an object already gone is not an error.

    Examples
    --------
    >>> write_bytes("memory://doc-remove/a.png", b"png")
    >>> remove("memory://doc-remove/a.png"); remove("memory://doc-remove/a.png")
    >>> exists("memory://doc-remove/a.png")
    False
    """
    refuse_read_only(url)
    fs, path = filesystem(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass
    except Exception as exc:
        raise _failure(url, "remove", exc) from None


def forget_finalizers(fs: Any) -> None:
    """Detach the ``weakref.finalize`` callbacks a filesystem registered on itself, once
    its sessions are closed otherwise: a filesystem made for a loop of its own (zarr's)
    registers callbacks that would run at exit, with no loop, and fail with a traceback.
    (An example is :func:`finalizers_of`'s.)
    """
    for finalizer in finalizers_of(fs):
        finalizer.detach()


def finalizers_of(owner: object) -> list[Any]:
    """The live ``weakref.finalize`` objects registered on ``owner`` (Python keeps them in
    ``weakref.finalize._registry``; where it does not, none).

    Examples
    --------
    >>> import weakref
    >>> class Session:
    ...     pass
    >>> session = Session()
    >>> finalizer = weakref.finalize(session, print, "closed")
    >>> finalizers_of(session) == [finalizer]
    True
    >>> forget_finalizers(session)
    >>> finalizers_of(session), finalizer.alive
    ([], False)
    >>> del session  # (nothing printed)
    """
    import weakref

    return [finalizer for finalizer in list(getattr(weakref.finalize, "_registry", {}))
            if (found := finalizer.peek()) is not None and found[0] is owner]


def refuse_read_only(url: str) -> None:
    if _protocol(url) in _HTTP_PROTOCOLS:
        raise BadInputError(redact(f"{url}: http(s) URLs are read-only"))


def _refuse_listing(url: str) -> None:
    if _protocol(url) in _HTTP_PROTOCOLS:
        raise BadInputError(redact(f"{url}: http(s) URLs name single files; "
                                   "they cannot be listed as a folder"))


def _is_s3(fs: Any) -> bool:
    """Whether ``fs`` is s3fs's (which has S3's own calls: multipart uploads, sizes)."""
    return hasattr(fs, "_call_s3")


def _split_path(fs: Any, path: str) -> tuple[str, str]:
    """(bucket, key) for stores with buckets (S3, GCS, Azure); ("", path) for others."""
    split = getattr(fs, "split_path", None)
    if split is None:
        return "", path
    try:
        bucket, key, *_ = split(path)
    except Exception:
        return "", path
    return bucket, key


def _quietly_is_folder(fs: Any, path: str) -> bool:
    try:
        return bool(fs.isdir(path))
    except Exception:
        return False


# --- uploads ------------------------------------------------------------------------------

async def _upload(fs: Any, path: str, data: bytes) -> None:
    """Store ``data`` whole: one PUT, or an S3 multipart upload aborted on any failure."""
    if not _is_s3(fs):
        await fs._pipe_file(path, data)
    elif len(data) >= MULTIPART_THRESHOLD:
        await _multipart_upload(fs, path, data)
    else:  # s3fs would make its own multipart upload from 2 chunks on: one PUT, surely
        await fs._pipe_file(path, data, chunksize=max(MULTIPART_THRESHOLD, len(data)))


async def _multipart_upload(fs: Any, path: str, data: bytes) -> None:
    """An S3 multipart upload, completed only when every part is sent, else aborted.

    Unlike s3fs's own (which aborts on errors but not on cancellation, and
    leaves its other parts running), every failure, Ctrl-C included, stops the
    parts still running, then aborts the upload so that its parts are deleted.
    """
    bucket, key = _split_path(fs, path)
    part_size = max(PART_SIZE, math.ceil(len(data) / _MAX_PARTS))
    started = await fs._call_s3("create_multipart_upload", Bucket=bucket, Key=key)
    upload_id = started["UploadId"]
    running = asyncio.Semaphore(max(1, int(getattr(fs, "max_concurrency", 4))))

    async def send(number: int, start: int) -> dict[str, Any]:
        async with running:
            sent = await fs._call_s3("upload_part", Bucket=bucket, Key=key,
                                     UploadId=upload_id, PartNumber=number,
                                     Body=data[start:start + part_size])
        return {"PartNumber": number, "ETag": sent["ETag"]}

    parts = [asyncio.ensure_future(send(number, start))
             for number, start in enumerate(range(0, len(data), part_size), 1)]
    try:
        done = await asyncio.gather(*parts)
        await fs._call_s3("complete_multipart_upload", Bucket=bucket, Key=key,
                          UploadId=upload_id, MultipartUpload={"Parts": list(done)})
    except BaseException:
        for part in parts:
            part.cancel()
        await asyncio.gather(*parts, return_exceptions=True)
        try:
            await fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key,
                              UploadId=upload_id)
        except Exception:  # the service is gone: the parts stay invisible (a lifecycle
            pass           # rule for incomplete uploads deletes them)
        raise
    finally:
        fs.invalidate_cache(path)


def _run_cancellably(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, Any]) -> Any:
    """Run ``work`` on the filesystem's event loop (another thread) and wait for it.

    If the wait is interrupted (Ctrl-C, or any exception raised in this thread),
    ``work`` is cancelled too, and given a few seconds to clean up, rather than
    left running: an upload the user stopped must not complete behind their back.
    """
    finished = threading.Event()

    async def watched() -> Any:
        try:
            return await work
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(watched(), loop)
    try:
        while not finished.wait(0.5):  # short waits: Ctrl-C gets through on every system
            pass
        return future.result()
    except BaseException:
        future.cancel()
        finished.wait(_CANCEL_WAIT_SECONDS)
        raise


# --- errors -------------------------------------------------------------------------------

#: Exception classes (by name, not to import their libraries) that mean the service
#: could not be reached or did not answer.
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                "ConnectionClosedError", "HTTPClientError", "ProxyConnectionError",
                "ClientConnectionError", "ServerDisconnectedError", "ServerTimeoutError",
                "ClientPayloadError", "FSTimeoutError", "TimeoutError", "ConnectionError",
                "IncompleteRead", "ConnectionResetError"}
_CONNECTION_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
                      errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPIPE,
                      getattr(errno, "EHOSTDOWN", errno.EHOSTUNREACH)}
_CREDENTIAL_CODES = {
    "SignatureDoesNotMatch": "access denied: the secret key does not match the access key "
                             "(check the credentials)",
    "InvalidAccessKeyId": "access denied: unknown access key (check the credentials)",
    "ExpiredToken": "access denied: the session token has expired (renew the credentials)",
    "InvalidToken": "access denied: invalid session token (check the credentials)",
    "RequestTimeTooSkewed": "refused: this computer's clock is too far off",
    # Azure's
    "AuthenticationFailed": "access denied: the signature or key does not match "
                            "(check the credentials)",
    "AuthorizationFailure": "access denied (check the credentials)",
}


def _failure(url: str, action: str, exc: BaseException,
             on_worker: bool | None = None) -> UpconvError:
    """The one-line, secret-free error for ``exc`` raised while ``action``-ing ``url``
    (``on_worker``: raised in a Dask worker's task; default, whether this runs in one)."""
    if isinstance(exc, UpconvError):
        return exc
    error_class, cause = _describe(url, action, exc, on_worker)
    return error_class(_one_line(f"{url}: {cause}"))


def _describe(url: str, action: str, exc: BaseException, on_worker: bool | None = None
              ) -> tuple[type[UpconvError], str]:
    """The kind of error and its cause in plain words."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    code, detail = _service_error(exc)
    status = _http_status(exc)
    if isinstance(exc, ImportError):
        return BadInputError, f"a storage package is missing ({_exception_text(exc)}): " \
                              "pip install 'upconv[cloud]'"
    if code in _CREDENTIAL_CODES:
        return FileAccessError, _CREDENTIAL_CODES[code]
    if _names_bucket(exc):
        return FileAccessError, f"no such bucket {_bucket_of(url)!r}"
    if isinstance(exc, FileNotFoundError) or status == 404:
        return FileAccessError, "no such file"
    if isinstance(exc, PermissionError) or status in (401, 403) or code == "AccessDenied":
        return FileAccessError, "access denied (check the credentials)"
    if "NoCredentialsError" in names or "PartialCredentialsError" in names:
        if on_worker if on_worker is not None else _on_a_dask_worker():
            return FileAccessError, ("no credentials found on a Dask worker (set them on "
                                     "every worker, or give --storage-option key=... "
                                     "--storage-option secret=..., which travel with the "
                                     "tasks)")
        return FileAccessError, ("no credentials found (set AWS_ACCESS_KEY_ID and "
                                 "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or use "
                                 "--storage-option anon=true for public data)")
    if "ParamValidationError" in names or code in ("InvalidBucketName", "InvalidURI",
                                                   "KeyTooLongError"):
        return BadInputError, f"not a valid object URL ({detail or _exception_text(exc)})"
    if names & _UNREACHABLE or _connection_errno(exc) is not None \
            or isinstance(exc, asyncio.TimeoutError):
        return FileAccessError, f"cannot reach the storage service ({_unreachable_reason(exc)})"
    if (status or 0) >= 500 or code in ("InternalError", "ServiceUnavailable", "SlowDown"):
        return FileAccessError, ("the storage service failed "
                                 f"({code or status}: {detail or _exception_text(exc)})")
    if isinstance(exc, (TypeError,)):
        return BadInputError, f"bad storage options ({_exception_text(exc)})"
    if code and detail:
        return FileAccessError, f"cannot {action} ({code}: {detail})"
    return FileAccessError, f"cannot {action} ({_exception_text(exc)})"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes and contexts, without loops."""
    found: list[BaseException] = []
    while exc is not None and exc not in found and len(found) < 20:
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def _service_error(exc: BaseException) -> tuple[str, str]:
    """The (code, message) of a service's error in ``exc``'s chain: a botocore
    ``ClientError``'s, or an azure-core ``HttpResponseError``'s (its message's first line,
    without the request's ID and the response's XML); ("", "") if there is none."""
    for link in _chain(exc):
        response = getattr(link, "response", None)
        if isinstance(response, Mapping):
            error = response.get("Error", {})
            return str(error.get("Code", "")), str(error.get("Message", ""))
        code = getattr(link, "error_code", None)
        if code and "azure" in type(link).__module__:
            message = str(getattr(link, "message", "") or getattr(link, "reason", "") or "")
            return str(getattr(code, "value", code)), message.split("\n", 1)[0].strip()
    return "", ""


def _http_status(exc: BaseException) -> int | None:
    for link in _chain(exc):
        for name in ("status", "status_code"):  # (aiohttp's and botocore's; azure-core's)
            status = getattr(link, name, None)
            if isinstance(status, int):
                return status
    return None


def _names_bucket(exc: BaseException) -> bool:
    """Whether ``exc`` says the bucket (not the object) does not exist."""
    code, _ = _service_error(exc)
    return code in ("NoSuchBucket", "ContainerNotFound") or any(
        "bucket does not exist" in str(link).lower() for link in _chain(exc))


def _on_a_dask_worker() -> bool:
    """Whether this runs in a task on a Dask worker (whose credentials are its own, not
    those of the machine the command runs on)."""
    worker_module = sys.modules.get("distributed.worker")
    if worker_module is None:
        return False
    try:
        worker_module.get_worker()
    except ValueError:
        return False
    return True


def _bucket_of(url: str) -> str:
    """The bucket (first name after the protocol) of a URL."""
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def _connection_errno(exc: BaseException) -> int | None:
    for link in _chain(exc):
        number = getattr(link, "errno", None)
        if isinstance(link, OSError) and number in _CONNECTION_ERRNOS:
            return number
    return None


def _unreachable_reason(exc: BaseException) -> str:
    """Why the service could not be reached, in a few words (``Connection refused``)."""
    number = _connection_errno(exc)
    if number is not None:
        return os.strerror(number)
    names = {cls.__name__ for link in _chain(exc) for cls in type(link).__mro__}
    if names & {"ConnectTimeoutError", "ServerTimeoutError"}:
        return "connection timed out"
    if names & {"ReadTimeoutError", "FSTimeoutError", "TimeoutError"}:
        return "no answer in time"
    if names & {"ConnectionClosedError", "ServerDisconnectedError", "ClientPayloadError",
                "IncompleteRead", "ConnectionResetError"}:
        return "the connection was closed"
    return _exception_text(exc)


def _exception_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _one_line(text: str) -> str:
    """``text`` on one line, secrets redacted."""
    return redact(" ".join(text.split()))
