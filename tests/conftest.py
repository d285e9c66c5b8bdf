"""Shared fixtures and helpers."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from scipy import ndimage

# The suite draws the same examples on every run and machine (CI must not fail at random);
# HYPOTHESIS_PROFILE=explore draws new ones, to look for bugs.
settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

# A runner that starts the suite in the background without job control (`bash -c "... &"`)
# makes it, and every process it starts, ignore SIGINT; the Ctrl-C tests need Ctrl-C to
# arrive, here and in the upconv processes they start (which inherit the default action).
signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"

SCIPY_MODE = {"edge": "nearest", "reflect": "reflect", "zero": "grid-constant"}
ORDER = {"nearest": 0, "bilinear": 1, "bicubic": 3}


def zoom_per_channel(image: np.ndarray, factor: tuple[float, float], method: str,
                     boundary: str) -> np.ndarray:
    """The independent reference: scipy.ndimage.zoom on each channel, in float64."""
    planar = image.ndim == 2
    img3 = image[:, :, None] if planar else image
    channels = [ndimage.zoom(img3[:, :, c].astype(np.float64), factor, order=ORDER[method],
                             grid_mode=True, mode=SCIPY_MODE[boundary])
                for c in range(img3.shape[2])]
    out = np.stack(channels, axis=-1)
    return out[:, :, 0] if planar else out


def assert_images_close(actual: np.ndarray, expected: np.ndarray, atol: float,
                        what: str = "") -> None:
    """assert_allclose with a message that says where the worst pixel is."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    worst = np.unravel_index(np.argmax(diff), diff.shape) if diff.size else ()
    assert diff.max(initial=0) <= atol, (
        f"{what}: max |difference| {diff.max():.3g} > {atol:g} at pixel {worst}")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261128)


@pytest.fixture
def big_npy(tmp_path, rng):
    """For the object-store tests that stream: a 700x600 RGB float32 .npy, and its x2
    result streamed in 64-row bands to a local file (the reference: 20 MB, 22 bands)."""
    from upconv.cli import run

    path = tmp_path / "in.npy"
    np.save(path, rng.random((700, 600, 3)).astype(np.float32))
    assert run(["scale", str(path), str(tmp_path / "local.npy"), "-f", "2", "--tile", "64",
                "--quiet"]) == 0
    return path, (tmp_path / "local.npy").read_bytes()


def interrupt_at_part(monkeypatch, number: int) -> None:
    """A streamed job's part ``number`` is about to be sent when Ctrl-C comes."""
    import upconv.pipeline

    real = upconv.pipeline.upload_bands

    def interrupted(*args):
        if args[-1][0] == number:  # (the part's number)
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(upconv.pipeline, "upload_bands", interrupted)


def limited_run(args: list[str], cwd: Path, limit: int, code: str = "", **kwargs
                ) -> subprocess.CompletedProcess:
    """``upconv ARGS`` in a process whose files may not grow past ``limit`` bytes.

    Writes beyond the limit fail with EFBIG, as writes to a full disk fail with
    ENOSPC (SIGXFSZ is ignored, so the write fails instead of killing the
    process): a full disk without root or a small filesystem. ``code`` runs
    first in that process (to patch something); ``kwargs`` go to
    :func:`subprocess.run` (stderr and stdout are captured as text unless given).
    """
    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    program = code + "\nimport sys\nfrom upconv.cli import run\nsys.exit(run(sys.argv[1:]))"
    kwargs.setdefault("stdout", subprocess.PIPE)
    # Unbuffered text streams (PYTHONUNBUFFERED) drop the rest of a short write silently
    # (a CPython limitation), where buffered ones retry and get the error.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", program, *args], cwd=cwd,
                          preexec_fn=limit_files, stderr=subprocess.PIPE, text=True,
                          env={**env, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=300, **kwargs)


class FifoReader:
    """Everything written into the named pipe ``path`` while the test runs a job.

    The pipe is opened for reading and, to keep its end from coming early, for
    writing too, before the job starts; :meth:`result` drops that writer once the
    job is done and returns what the job wrote. Nothing depends on timing: a job
    that never opens the pipe leaves it empty.
    """

    def __init__(self, path: Path) -> None:
        self.read_end = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(self.read_end, True)
        self.held = os.open(path, os.O_WRONLY)
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with os.fdopen(self.read_end, "rb") as pipe:
            while chunk := pipe.read(65536):
                self.chunks.append(chunk)

    def result(self) -> bytes:
        os.close(self.held)
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()
        return b"".join(self.chunks)


def make_images(folder: Path, count: int, side: int = 96) -> list[Path]:
    """``count`` different random RGB PNGs ``p00.png``... in ``folder`` (made if missing);
    noise compresses badly, so each takes a while to write."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count * 1000 + side)
    paths = []
    for index in range(count):
        path = folder / f"p{index:02d}.png"
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def temporary_files(folder: Path) -> list[str]:
    """The names of the temporary files (``*.part``) in ``folder`` and its subfolders."""
    return sorted(p.name for p in folder.rglob("*.part"))


# --- object stores ------------------------------------------------------------------------

#: Fake credentials for the local S3 server (moto accepts any until authentication is on).
FAKE_ACCESS_KEY_ID = "AKIAUPCONVTESTKEY000"
FAKE_SECRET = "upconv-test-secret-never-printed"


class S3Server:
    """moto's S3 server (``moto[server]``) on loopback, in a thread of this process.

    Its buckets live in moto's in-process backends, which every server started
    here shares; :attr:`endpoint` is the URL to reach it (``AWS_ENDPOINT_URL``).
    """

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def client(self, **kwargs: object):
        """A boto3 S3 client for this server: the tests' independent view of the buckets."""
        import boto3

        kwargs = {"aws_access_key_id": FAKE_ACCESS_KEY_ID,
                  "aws_secret_access_key": FAKE_SECRET, "region_name": "us-east-1",
                  **kwargs}
        return boto3.client("s3", endpoint_url=self.endpoint, **kwargs)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """One S3 server for the session; tests that need a server of their own start one."""
    pytest.importorskip("moto.server", reason="the object-store tests need moto[server]")
    pytest.importorskip("s3fs", reason="the object-store tests need s3fs")
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path):
    """The environment a user of the local S3 server would set: fake credentials and
    ``AWS_ENDPOINT_URL``; nothing from this machine's own AWS configuration."""
    import fsspec

    for name in list(os.environ):
        if name.startswith(("AWS_", "FSSPEC_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setattr(fsspec.config, "conf", {})
    fresh_filesystems()
    yield s3_server
    fresh_filesystems()


def fresh_filesystems() -> None:
    """Forget the storage options and every filesystem made (they hold the environment
    they were made in)."""
    from fsspec.spec import AbstractFileSystem

    from upconv import storage

    storage.use_storage_options({})
    storage._known_sizes.clear()
    for cls in [AbstractFileSystem, *_subclasses(AbstractFileSystem)]:
        for made in list(getattr(cls, "_cache", {}).values()):
            # their sessions closed now, not left to the collector: the finalizers they
            # registered (adlfs's, gcsfs's) run now, and not again
            for finalizer in storage.finalizers_of(made):
                try:
                    finalizer()
                except Exception:  # (a session gone already)
                    pass
        cls.clear_instance_cache()


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


_buckets = iter(range(1_000_000))


@pytest.fixture
def bucket(s3_env) -> str:
    """A new, empty bucket on the local S3 server, as ``s3://NAME``."""
    name = f"upconv-test-{next(_buckets)}"
    s3_env.client().create_bucket(Bucket=name)
    return f"s3://{name}"


def intercept(monkeypatch, url: str, before) -> list[tuple[str, dict]]:
    """Call ``await before(method, kwargs)`` before each S3 request the filesystem of
    ``url`` sends; the requests sent, in order."""
    from upconv import storage

    fs, _ = storage.filesystem(url)
    original = fs._call_s3
    calls = []

    async def call_s3(method, *args, **kwargs):
        calls.append((method, {k: v for k, v in kwargs.items() if k != "Body"}))
        await before(method, kwargs)
        return await original(method, *args, **kwargs)

    monkeypatch.setattr(fs, "_call_s3", call_s3)
    return calls


@pytest.fixture(scope="module")
def dask_cluster():
    """A ``dask.distributed.LocalCluster`` of 2 single-threaded worker processes on loopback,
    for a test module's cluster jobs."""
    pytest.importorskip("distributed", reason="the cluster tests need upconv[dask]")
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=":0") as local:
        yield local
