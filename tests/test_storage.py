"""upconv.storage: object stores through fsspec, against a real S3 server (moto) on loopback.

The session's S3 server (``s3_server`` in conftest.py) is reached the way a user
reaches one: s3fs, with ``AWS_ENDPOINT_URL`` and credentials in the environment.
The tests look at the buckets through boto3, independently of the code under test.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import http.server
import json
import pickle
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import FAKE_ACCESS_KEY_ID, FAKE_SECRET, S3Server, fresh_filesystems, intercept

from upconv import storage
from upconv.errors import BadInputError, FileAccessError

pytest.importorskip("fsspec", reason="the object-store tests need fsspec")

#: A failure must be reported within this many seconds, not after minutes of retries.
FAST = 10.0


def key_exists(server: S3Server, url: str, **credentials: str) -> bool:
    """Whether the object at ``url`` exists, asked of the server directly (boto3)."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    try:
        server.client(**credentials).head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return False
        raise
    return True


def pending_uploads(server: S3Server, url: str) -> list[str]:
    """The keys of the multipart uploads started and neither completed nor aborted."""
    bucket = url.removeprefix("s3://").partition("/")[0]
    listed = server.client().list_multipart_uploads(Bucket=bucket)
    return [upload["Key"] for upload in listed.get("Uploads", [])]


def one_line_error(error: pytest.ExceptionInfo, url: str) -> str:
    """The message of a raised error, checked to be one line naming ``url``."""
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{url}: "), message
    return message


# --- URLs and options ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["s3://b/k.png", "S3://b/k", "s3a://b/k", "gs://b/k",
                                  "gcs://b/k", "az://c/k", "abfs://c/k", "memory://x",
                                  "http://host/a.png", "https://host/a.png",
                                  "simplecache::s3://b/k"])
def test_urls_are_recognised(path):
    assert storage.is_url(path)


@pytest.mark.parametrize("path", ["in.png", "sub/in.png", "/data/in.png", "-", "C:\\x.png",
                                  "C:/x.png", "C://x.png", "file:///data/in.png",
                                  "local://in.png", "odd:name.png", ""])
def test_paths_are_not_urls(path):
    assert not storage.is_url(path)


def test_importing_upconv_does_not_import_fsspec():
    code = ("import sys, upconv, upconv.storage, upconv.fileio\n"
            "upconv.storage.is_url('s3://b/k'); upconv.storage.join('s3://b', 'k')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('fsspec', 's3fs', 'botocore', 'aiohttp')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_storage_options_are_parsed_as_fsspec_parses_its_variables():
    try:
        storage.set_storage_options(["anon=false", "max_concurrency=4", "endpoint_url=http://h:1",
                                     "config_kwargs.retries.max_attempts=1",
                                     "config_kwargs.connect_timeout=2",
                                     'client_kwargs={"region_name": "eu-west-1"}',
                                     "token=12345", "password=true", "profile=a=b",
                                     "max_concurrency=5"])
        options = storage.storage_options()
        assert options == {"anon": False, "max_concurrency": 5, "endpoint_url": "http://h:1",
                           "config_kwargs": {"retries": {"max_attempts": 1},
                                             "connect_timeout": 2},
                           "client_kwargs": {"region_name": "eu-west-1"},
                           "token": "12345", "password": "true", "profile": "a=b"}
        assert pickle.loads(pickle.dumps(options)) == options  # for Dask workers
        options["anon"] = True
        assert storage.storage_options()["anon"] is False  # a copy
    finally:
        storage.set_storage_options([])
    assert storage.storage_options() == {}


@pytest.mark.parametrize("pairs", [["anon=true", "secret:abcdef"], ["=x"], ["a..b=1"]])
def test_a_malformed_storage_option_is_a_one_line_error_that_does_not_repeat_it(pairs):
    with pytest.raises(BadInputError) as error:
        storage.set_storage_options(pairs)
    assert "\n" not in str(error.value) and "abcdef" not in str(error.value)
    assert str(error.value).startswith("--storage-option number")


def test_join_puts_a_relative_path_under_a_prefix():
    assert storage.join("s3://b/out", "x/y.png") == "s3://b/out/x/y.png"
    assert storage.join("s3://b/out/", "/y.png") == "s3://b/out/y.png"
    assert storage.join("s3://b", "y.png") == "s3://b/y.png"
    assert storage.join("s3://b/out", "") == "s3://b/out"
    assert storage.join("memory://", "y.png") == "memory://y.png"


def test_unknown_protocols_are_bad_input():
    with pytest.raises(BadInputError) as error:
        storage.read_bytes("nosuchprotocol://b/k.png")
    assert one_line_error(error, "nosuchprotocol://b/k.png").endswith(
        "unknown storage protocol 'nosuchprotocol'")


def test_redact_removes_every_kind_of_secret(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-value")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-session-token")
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", "sv=2024&sig=azure-signature")
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # not a secret
    try:
        storage.set_storage_options(["client_kwargs.aws_secret_access_key=nested-secret",
                                     "sas_token=option-sas", "endpoint_url=http://h:9000"])
        text = storage.redact("a env-secret-value b env-session-token c nested-secret "
                              "d option-sas e sv=2024&sig=azure-signature f http://h:9000 "
                              "us-east-1 https://u:pass@h/x?sig=s1&X-Amz-Credential=c1&n=1")
    finally:
        storage.set_storage_options([])
    assert text == ("a *** b *** c *** d *** e *** f http://h:9000 us-east-1 "
                    "https://u:***@h/x?sig=***&X-Amz-Credential=***&n=1")


# --- S3: reading, writing, listing --------------------------------------------------------

def test_aws_endpoint_url_from_the_environment_is_used(s3_env, bucket):
    """botocore (>= 1.31) reads AWS_ENDPOINT_URL itself; s3fs passes no endpoint of its own."""
    fs, _ = storage.filesystem(f"{bucket}/x")
    assert fs.s3._endpoint.host == s3_env.endpoint


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * 2**20 + 7])
def test_objects_round_trip(s3_env, bucket, size):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    url = f"{bucket}/in/image.png"
    storage.write_bytes(url, data)
    assert storage.read_bytes(url) == data
    assert s3_env.client().get_object(Bucket=bucket[5:], Key="in/image.png")["Body"].read() \
        == data
    storage.write_bytes(url, b"replaced")
    assert storage.read_bytes(url) == b"replaced"


@pytest.mark.parametrize("listing_from", [1, 1000], ids=["listed", "asked-one-by-one"])
def test_existing_finds_objects_and_folders(s3_env, bucket, monkeypatch, listing_from):
    monkeypatch.setattr(storage, "LISTING_FROM", listing_from)
    for name in ("out/a.png", "out/b.png", "out/sub/c.png", "outside.png", "other/d.png"):
        storage.write_bytes(f"{bucket}/{name}", b"x")
    asked = [f"{bucket}/out/{name}" for name in ("a.png", "b.png", "sub", "x.png", "a")]
    asked += [f"{bucket}/outside.png", f"{bucket}/missing/e.png", f"{bucket}/other/d.png"]
    asked += ["s3://upconv-no-such-bucket/out/a.png"]
    assert storage.existing(asked) == {f"{bucket}/{name}" for name in (
        "out/a.png", "out/b.png", "out/sub", "outside.png", "other/d.png")}
    assert storage.existing([]) == set()


def test_existing_lists_a_prefix_once_rather_than_asking_about_each_object(
        s3_env, bucket, monkeypatch):
    urls = [f"{bucket}/out/{index}.png" for index in range(2 * storage.LISTING_FROM)]
    for url in urls[::2]:
        storage.write_bytes(url, b"x")

    async def before(method, kwargs):
        pass

    calls = intercept(monkeypatch, urls[0], before)
    assert storage.existing(urls) == set(urls[::2])
    assert [method for method, _ in calls] == ["list_objects_v2"]


def test_a_listed_object_is_read_in_one_request(s3_env, bucket, monkeypatch):
    """s3fs asks an object's size (HEAD) before its GET; a size the listing gave is not
    asked again, so a batch of images sends one request per input."""
    for name, data in (("a.png", b"png"), ("empty.png", b"")):
        storage.write_bytes(f"{bucket}/in/{name}", data)
    listed = storage.list_files(f"{bucket}/in", recursive=False, suffixes=(".png",))
    assert [storage.known_size(url) for url in listed] == [3, 0]

    async def before(method, kwargs):
        pass

    calls = intercept(monkeypatch, listed[0], before)
    assert [storage.read_bytes(url) for url in listed] == [b"png", b""]
    assert [method for method, _ in calls] == ["get_object", "get_object"]
    calls.clear()
    storage.write_bytes(f"{bucket}/in/unlisted.png", b"png")  # unknown size: asked first
    assert storage.read_bytes(f"{bucket}/in/unlisted.png") == b"png"
    assert [method for method, _ in calls] == ["put_object", "head_object", "get_object"]


@pytest.mark.parametrize("told,methods", [
    (1, ["get_object"]),  # told small: one GET, whatever the object's size
    (10**12, ["head_object"] + ["get_object"] * 10),  # told big: s3fs's concurrent ranges
])
def test_a_wrong_size_costs_requests_never_data(s3_env, bucket, monkeypatch, told, methods):
    """A size told by a batch job that is stale (the object was replaced since, and is now
    bigger than s3fs's block size, here 1 KiB) still reads the whole object."""
    url = f"{bucket}/in/replaced.png"
    data = bytes(range(256)) * 40  # 10 KiB: ten blocks
    storage.write_bytes(url, data)
    fs, _ = storage.filesystem(url)
    monkeypatch.setattr(fs, "default_block_size", 1024)
    storage.expect_size(url, told)

    async def before(method, kwargs):
        pass

    calls = intercept(monkeypatch, url, before)
    assert storage.read_bytes(url) == data
    assert [method for method, _ in calls] == methods
    assert storage.known_size(url) is None  # read once: forgotten


def test_exists_is_folder_and_remove(s3_env, bucket):
    storage.write_bytes(f"{bucket}/in/a.png", b"a")
    assert storage.exists(f"{bucket}/in/a.png")
    assert not storage.exists(f"{bucket}/in/b.png")
    assert storage.exists(bucket) and storage.exists(f"{bucket}/")
    assert not storage.exists("s3://upconv-no-such-bucket/a.png")
    assert not storage.exists("s3://upconv-no-such-bucket")
    assert storage.is_folder(bucket) and storage.is_folder(f"{bucket}/in")
    assert storage.is_folder(f"{bucket}/in/")
    assert not storage.is_folder(f"{bucket}/in/a.png")
    assert not storage.is_folder(f"{bucket}/nothing")
    assert not storage.is_folder(f"{bucket}/i")  # a prefix of a name is not a folder
    assert not storage.is_folder("s3://upconv-no-such-bucket")
    storage.remove(f"{bucket}/in/a.png")
    storage.remove(f"{bucket}/in/a.png")  # gone already: not an error
    assert not storage.exists(f"{bucket}/in/a.png")
    assert not storage.is_folder(f"{bucket}/in")
    assert storage.is_folder(bucket)  # an empty bucket is a folder


def test_list_files(s3_env, bucket):
    names = ["top.png", "in/a.png", "in/B.PNG", "in/c.jpg", "in/notes.txt", "in/sub/d.png",
             "in/sub/deeper/e.Png", "in2/f.png", "inside.png"]
    for name in names:
        storage.write_bytes(f"{bucket}/{name}", name.encode())
    s3_env.client().put_object(Bucket=bucket[5:], Key="in/empty-folder/", Body=b"")
    images = (".png", ".jpg")
    assert storage.list_files(f"{bucket}/in", recursive=False, suffixes=images) == [
        f"{bucket}/in/B.PNG", f"{bucket}/in/a.png", f"{bucket}/in/c.jpg"]
    assert storage.list_files(f"{bucket}/in/", recursive=True, suffixes=(".PNG",)) == [
        f"{bucket}/in/B.PNG", f"{bucket}/in/a.png", f"{bucket}/in/sub/d.png",
        f"{bucket}/in/sub/deeper/e.Png"]
    assert storage.list_files(f"{bucket}/in/sub", recursive=False, suffixes=()) == [
        f"{bucket}/in/sub/d.png"]
    assert storage.list_files(bucket, recursive=False, suffixes=images) == [
        f"{bucket}/inside.png", f"{bucket}/top.png"]
    assert len(storage.list_files(f"{bucket}/", recursive=True, suffixes=())) == len(names)
    assert storage.list_files(f"{bucket}/nothing", recursive=True, suffixes=images) == []
    assert storage.list_files(f"{bucket}/in/empty-folder", recursive=True, suffixes=()) == []
    for found in storage.list_files(bucket, recursive=True, suffixes=()):
        assert storage.read_bytes(found) == found.removeprefix(f"{bucket}/").encode()


def test_an_empty_bucket_lists_nothing(s3_env, bucket):
    assert storage.list_files(bucket, recursive=True, suffixes=(".png",)) == []


# --- S3: errors ---------------------------------------------------------------------------

def test_a_missing_bucket_is_named(s3_env):
    url = "s3://upconv-no-such-bucket/in/x.png"
    for action in (lambda: storage.read_bytes(url), lambda: storage.write_bytes(url, b"x"),
                   lambda: storage.list_files("s3://upconv-no-such-bucket/in", True, ())):
        with pytest.raises(FileAccessError) as error:
            action()
        assert str(error.value).endswith(": no such bucket 'upconv-no-such-bucket'")
        assert "\n" not in str(error.value)


def test_a_missing_object_or_a_folder_is_not_read(s3_env, bucket):
    storage.write_bytes(f"{bucket}/in/a.png", b"a")
    with pytest.raises(FileAccessError) as error:
        storage.read_bytes(f"{bucket}/in/b.png")
    assert one_line_error(error, f"{bucket}/in/b.png").endswith(": no such file")
    with pytest.raises(FileAccessError) as error:
        storage.read_bytes(f"{bucket}/in")
    assert one_line_error(error, f"{bucket}/in").endswith(": is a folder, not a file")


def test_writing_needs_an_object_name(s3_env, bucket):
    for url in (bucket, f"{bucket}/", f"{bucket}/out/"):
        with pytest.raises(BadInputError) as error:
            storage.write_bytes(url, b"x")
        one_line_error(error, url)


@pytest.fixture
def stopped_server(s3_env):
    """A second S3 server, used for a bucket and an object, then stopped; the storage
    options point at it. Stopped servers refuse connections: nothing listens any more."""
    server = S3Server()
    name = "upconv-stopped"
    server.client().create_bucket(Bucket=name)
    storage.set_storage_options([f"endpoint_url={server.endpoint}"])
    storage.write_bytes(f"s3://{name}/in/a.png", b"a")
    server.stop()
    yield f"s3://{name}"
    storage.set_storage_options([])


def test_a_stopped_server_fails_fast_with_one_line(stopped_server):
    """Every operation, with upconv's default timeouts and retries (run side by side, as
    each waits for its retries)."""
    from concurrent.futures import ThreadPoolExecutor

    url, folder = f"{stopped_server}/in/a.png", f"{stopped_server}/in"
    calls = {"read": (url, lambda: storage.read_bytes(url)),
             "write": (url, lambda: storage.write_bytes(url, b"b")),
             "exists": (url, lambda: storage.exists(url)),
             "is_folder": (folder, lambda: storage.is_folder(folder)),
             "list": (folder, lambda: storage.list_files(folder, True, ())),
             "remove": (url, lambda: storage.remove(url))}

    def failure(action: str) -> tuple[float, BaseException | None]:
        start = time.monotonic()
        try:
            calls[action][1]()
        except Exception as exc:
            return time.monotonic() - start, exc
        return time.monotonic() - start, None

    with ThreadPoolExecutor(len(calls)) as pool:
        results = dict(zip(calls, pool.map(failure, calls), strict=True))
    for action, (seconds, exc) in results.items():
        named = calls[action][0]
        assert isinstance(exc, FileAccessError), (action, exc)
        assert str(exc) == f"{named}: cannot reach the storage service (Connection refused)"
        assert seconds < FAST, (action, seconds)


def test_storage_options_can_override_the_retry_defaults(stopped_server):
    storage.set_storage_options([f"endpoint_url={storage.storage_options()['endpoint_url']}",
                                 "config_kwargs.retries.max_attempts=1"])
    fs, _ = storage.filesystem(f"{stopped_server}/in/a.png")
    assert fs.config_kwargs == {"connect_timeout": 5, "read_timeout": 20,
                                "retries": {"max_attempts": 1, "mode": "standard"}}
    storage.set_storage_options([f"endpoint_url={storage.storage_options()['endpoint_url']}",
                                 "config_kwargs.retries.max_attempts=0"])
    fs, _ = storage.filesystem(f"{stopped_server}/in/a.png")
    fs.connect()
    sent = []
    fs._s3.meta.events.register("before-send.s3", lambda **kwargs: sent.append(kwargs))
    with pytest.raises(FileAccessError):
        storage.read_bytes(f"{stopped_server}/in/a.png")
    assert len(sent) == 1  # one attempt: no retry (counted, not timed)


def test_an_unknown_storage_option_is_a_one_line_error(s3_env, bucket):
    storage.set_storage_options(["no_such_option=1", f"secret={FAKE_SECRET}"])
    with pytest.raises(BadInputError) as error:
        storage.read_bytes(f"{bucket}/a.png")
    message = one_line_error(error, f"{bucket}/a.png")
    assert "no_such_option" in message and FAKE_SECRET not in message


@pytest.fixture
def authenticating(s3_env):
    """The server checks signatures (moto's server mode: ``POST /moto-api/reset-auth``
    with the number of requests to let through first, here 0), for a user created
    beforehand who may do anything; the user's access key id and secret."""
    import boto3

    iam = boto3.client("iam", endpoint_url=s3_env.endpoint, region_name="us-east-1",
                       aws_access_key_id=FAKE_ACCESS_KEY_ID,
                       aws_secret_access_key=FAKE_SECRET)
    user = f"upconv-{time.monotonic_ns()}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="everything", PolicyDocument=json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    access = iam.create_access_key(UserName=user)["AccessKey"]

    def reset_auth(count: str) -> None:
        request = urllib.request.Request(f"{s3_env.endpoint}/moto-api/reset-auth",
                                         data=count.encode(), method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.load(answer)["status"] == "ok"

    reset_auth("0")
    try:
        yield access["AccessKeyId"], access["SecretAccessKey"]
    finally:
        reset_auth("inf")


WRONG_SECRET = "Wrong/Secret+upconv-7f3a9c"


def test_bad_credentials_from_the_environment_are_refused_without_printing_them(
        s3_env, bucket, authenticating, monkeypatch):
    key_id, secret = authenticating
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    fresh_filesystems()
    storage.write_bytes(f"{bucket}/ok.png", b"ok")  # the right secret works
    assert storage.read_bytes(f"{bucket}/ok.png") == b"ok"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", WRONG_SECRET)
    fresh_filesystems()
    for action in (lambda: storage.read_bytes(f"{bucket}/ok.png"),
                   lambda: storage.write_bytes(f"{bucket}/new.png", b"x"),
                   lambda: storage.list_files(bucket, True, ()),
                   lambda: storage.exists(f"{bucket}/ok.png")):
        with pytest.raises(FileAccessError) as error:
            action()
        message = str(error.value)
        assert "\n" not in message and "access denied" in message, message
        assert WRONG_SECRET not in message and key_id not in message
    assert not key_exists(s3_env, f"{bucket}/new.png", aws_access_key_id=key_id,
                          aws_secret_access_key=secret)


def test_bad_credentials_from_storage_options_are_refused_without_printing_them(
        bucket, authenticating):
    key_id, _ = authenticating
    storage.set_storage_options([f"key={key_id}", f"secret={WRONG_SECRET}"])
    with pytest.raises(FileAccessError) as error:
        storage.write_bytes(f"{bucket}/new.png", b"x")
    message = one_line_error(error, f"{bucket}/new.png")
    assert message.endswith("access denied: the secret key does not match the access key "
                            "(check the credentials)")
    assert WRONG_SECRET not in message and key_id not in message
    storage.set_storage_options(["key=AKIAUNKNOWNKEY000000", f"secret={WRONG_SECRET}"])
    with pytest.raises(FileAccessError) as error:
        storage.write_bytes(f"{bucket}/new.png", b"x")
    assert "unknown access key" in str(error.value)
    assert "AKIAUNKNOWNKEY000000" not in str(error.value)


def test_a_missing_backend_names_the_package_and_the_extra(s3_env, monkeypatch):
    registry = sys.modules["fsspec.registry"]._registry  # fsspec.registry is a mapping
    monkeypatch.setitem(sys.modules, "s3fs", None)
    for protocol in ("s3", "s3a"):
        monkeypatch.delitem(registry, protocol, raising=False)
    with pytest.raises(BadInputError) as error:
        storage.read_bytes("s3://b/x.png")
    assert str(error.value) == ("s3://b/x.png: s3:// URLs need s3fs: "
                                "pip install 'upconv[cloud]'")
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    monkeypatch.delitem(registry, "gs", raising=False)
    with pytest.raises(BadInputError) as error:
        storage.write_bytes("gs://b/x.png", b"x")
    assert str(error.value) == ("gs://b/x.png: gs:// URLs need gcsfs: "
                                "pip install 'upconv[cloud]' gcsfs")


def test_missing_fsspec_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(BadInputError) as error:
        storage.exists("s3://b/x.png")
    assert str(error.value) == "s3://b/x.png: s3:// URLs need fsspec: pip install 'upconv[cloud]'"


# --- S3: an object is written whole or not at all -----------------------------------------

class CuttingProxy:
    """A TCP proxy to ``endpoint`` that forwards the first ``limit`` bytes of each request,
    then closes both connections: the server going away in the middle of an upload."""

    def __init__(self, endpoint: str, limit: int) -> None:
        host, port = endpoint.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.limit = limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._forward, args=(client, server), daemon=True).start()
            threading.Thread(target=self._backward, args=(server, client), daemon=True).start()

    def _forward(self, client: socket.socket, server: socket.socket) -> None:
        sent = 0
        try:
            while chunk := client.recv(65536):
                if sent + len(chunk) > self.limit:
                    server.sendall(chunk[:self.limit - sent])
                    self.cuts += 1
                    break
                server.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        for end in (client, server):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def _backward(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while chunk := server.recv(65536):
                client.sendall(chunk)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


def test_the_server_going_away_mid_upload_leaves_no_partial_object(s3_env, bucket):
    url = f"{bucket}/out/big.png"
    storage.write_bytes(url, b"old")
    proxy = CuttingProxy(s3_env.endpoint, limit=200_000)
    try:
        storage.set_storage_options([f"endpoint_url={proxy.endpoint}"])
        start = time.monotonic()
        with pytest.raises(FileAccessError) as error:
            storage.write_bytes(url, bytes(2_000_000))
        assert time.monotonic() - start < FAST
        with pytest.raises(FileAccessError):
            storage.write_bytes(f"{bucket}/out/new.png", bytes(2_000_000))
    finally:
        proxy.close()
        storage.set_storage_options([])
    assert proxy.cuts >= 2
    message = one_line_error(error, url)
    assert "cannot reach the storage service" in message, message
    assert storage.read_bytes(url) == b"old"  # the old object, whole
    assert not key_exists(s3_env, f"{bucket}/out/new.png")


@pytest.fixture
def small_parts(monkeypatch):
    """Multipart uploads from 6 MiB, in parts of 5 MiB (S3's smallest), so that the
    tests need not send hundreds of megabytes; a 12 MiB object goes in 3 parts."""
    monkeypatch.setattr(storage, "MULTIPART_THRESHOLD", 6 * 2**20)
    monkeypatch.setattr(storage, "PART_SIZE", 5 * 2**20)
    return bytes(range(256)) * (12 * 2**20 // 256)


def test_a_big_object_is_invisible_until_its_multipart_upload_completes(
        s3_env, bucket, small_parts, monkeypatch):
    url = f"{bucket}/out/big.npy"
    seen = {}

    async def before(method, kwargs):
        if method == "complete_multipart_upload":
            seen["exists before completion"] = key_exists(s3_env, url)
            seen["pending"] = pending_uploads(s3_env, bucket)

    calls = intercept(monkeypatch, url, before)
    storage.write_bytes(url, small_parts)
    assert [method for method, _ in calls] == ["create_multipart_upload", "upload_part",
                                               "upload_part", "upload_part",
                                               "complete_multipart_upload"]
    assert seen == {"exists before completion": False, "pending": ["out/big.npy"]}
    assert storage.read_bytes(url) == small_parts
    assert pending_uploads(s3_env, bucket) == []


def test_a_failed_multipart_upload_is_aborted_and_leaves_the_old_object(
        s3_env, bucket, small_parts, monkeypatch):
    url = f"{bucket}/out/big.npy"
    storage.write_bytes(url, b"old")

    async def before(method, kwargs):
        if method == "upload_part" and kwargs["PartNumber"] == 2:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    calls = intercept(monkeypatch, url, before)
    with pytest.raises(FileAccessError) as error:
        storage.write_bytes(url, small_parts)
    assert one_line_error(error, url).endswith(
        "cannot reach the storage service (Connection reset by peer)")
    assert calls[-1][0] == "abort_multipart_upload"
    assert pending_uploads(s3_env, bucket) == []
    assert storage.read_bytes(url) == b"old"


@pytest.mark.parametrize("stalled", ["put_object", "upload_part"])
def test_ctrl_c_during_an_upload_cancels_it_and_leaves_nothing(
        s3_env, bucket, small_parts, monkeypatch, stalled):
    """Ctrl-C in the waiting thread cancels the upload running in fsspec's event loop:
    it does not complete later, and a multipart upload is aborted."""
    import _thread

    url = f"{bucket}/out/big.npy"
    data = small_parts if stalled == "upload_part" else b"small"

    async def before(method, kwargs):
        if method == stalled and kwargs.get("PartNumber", 2) == 2:
            threading.Timer(0.2, _thread.interrupt_main).start()
            await asyncio.sleep(FAST)  # the service stalls; Ctrl-C comes meanwhile

    calls = intercept(monkeypatch, url, before)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        storage.write_bytes(url, data)
    # The stalled request alone lasts FAST seconds: ending sooner means Ctrl-C cut it.
    assert time.monotonic() - start < FAST
    time.sleep(0.5)  # an upload left running would finish now
    assert not key_exists(s3_env, url)
    assert pending_uploads(s3_env, bucket) == []
    if stalled == "upload_part":
        assert calls[-1][0] == "abort_multipart_upload"


# --- other stores -------------------------------------------------------------------------

def test_memory_urls_work_too():
    base = f"memory://upconv-test-{time.monotonic_ns()}"
    storage.write_bytes(f"{base}/in/a.png", b"a")
    storage.write_bytes(f"{base}/in/sub/b.PNG", b"b")
    assert storage.read_bytes(f"{base}/in/a.png") == b"a"
    assert storage.exists(f"{base}/in/a.png") and not storage.exists(f"{base}/in/c.png")
    assert storage.is_folder(f"{base}/in") and not storage.is_folder(f"{base}/in/a.png")
    assert storage.list_files(f"{base}/in", recursive=True, suffixes=(".png",)) == [
        f"{base}/in/a.png", f"{base}/in/sub/b.PNG"]
    assert storage.list_files(f"{base}/in", recursive=False, suffixes=(".png",)) == [
        f"{base}/in/a.png"]
    storage.remove(f"{base}/in/a.png")
    with pytest.raises(FileAccessError) as error:
        storage.read_bytes(f"{base}/in/a.png")
    assert one_line_error(error, f"{base}/in/a.png").endswith(": no such file")


@pytest.fixture
def http_folder(tmp_path: Path):
    """``tmp_path`` served over HTTP on loopback; its base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_http_urls_are_read_only(http_folder, tmp_path):
    pytest.importorskip("aiohttp", reason="fsspec reads http(s) URLs with aiohttp")
    (tmp_path / "a.png").write_bytes(b"\x89PNG data")
    url = f"{http_folder}/a.png"
    assert storage.read_bytes(url) == b"\x89PNG data"
    assert storage.exists(url) and not storage.exists(f"{http_folder}/b.png")
    assert not storage.is_folder(url)
    with pytest.raises(FileAccessError) as error:
        storage.read_bytes(f"{http_folder}/b.png")
    assert one_line_error(error, f"{http_folder}/b.png").endswith(": no such file")
    for action in (lambda: storage.write_bytes(url, b"x"), lambda: storage.remove(url),
                   lambda: storage.list_files(http_folder, True, ())):
        with pytest.raises(BadInputError):
            action()
    assert (tmp_path / "a.png").read_bytes() == b"\x89PNG data"


def test_options_given_by_protocol_are_for_that_protocol_only(s3_env, http_folder,
                                                              tmp_path):
    """Reading over HTTP while S3 options are given: HTTPFileSystem would refuse them."""
    pytest.importorskip("aiohttp", reason="fsspec reads http(s) URLs with aiohttp")
    (tmp_path / "a.png").write_bytes(b"a")
    storage.set_storage_options([f"s3.endpoint_url={s3_env.endpoint}",
                                 "s3.config_kwargs.read_timeout=7", "use_ssl=false"])
    options = storage.filesystem_options("s3://b/k.png")
    assert options["endpoint_url"] == s3_env.endpoint and options["use_ssl"] is False
    assert options["config_kwargs"]["read_timeout"] == 7
    assert "endpoint_url" not in storage.filesystem_options(f"{http_folder}/a.png")
    storage.set_storage_options([f"s3.endpoint_url={s3_env.endpoint}"])
    assert storage.read_bytes(f"{http_folder}/a.png") == b"a"
    fs, _ = storage.filesystem("s3://b/k.png")
    assert fs.endpoint_url == s3_env.endpoint


def test_an_http_server_that_is_gone_fails_fast():
    pytest.importorskip("aiohttp", reason="fsspec reads http(s) URLs with aiohttp")
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.png"  # nothing listens there now
    start = time.monotonic()
    with pytest.raises(FileAccessError) as error:
        storage.read_bytes(url)
    assert time.monotonic() - start < FAST
    assert one_line_error(error, url).endswith(
        "cannot reach the storage service (Connection refused)")
