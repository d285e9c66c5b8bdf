"""``gs://`` and ``az://``: upconv's commands on Google Cloud Storage and Azure Blob Storage,
through gcsfs and adlfs, against local emulators started by the tests on loopback
(gcp-storage-emulator, in this process; Azurite, Microsoft's own emulator, from npm). Each
object is read back independently (google-cloud-storage, azure-storage-blob). The same
promises as on S3 and a local disk: the same bytes, nothing replaced without -y, resumable
batches, one-line errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, fresh_filesystems, interrupt_at_part, make_images

from upconv.cli import run

# gcsfs 2026 asks Google's gRPC control plane for each bucket's layout (hierarchical or
# zonal buckets), which an emulator has not: its own switch turns that off. Read when
# gcsfs is imported, so set before.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

#: Azurite's well-known development account (its documentation's, not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


class GcsEmulator:
    """gcp-storage-emulator's server, in a thread of this process, in memory."""

    scheme = "gs"

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        self.server = create_server("127.0.0.1", 0, in_memory=True)  # (any free port)
        self.server.start()  # (returns once it listens)
        port = self.server._api._httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{port}"

    def environment(self) -> dict[str, str]:
        """What a user of the emulator sets: its address, and anonymous access (fsspec's
        ``FSSPEC_GS_TOKEN``: the emulator checks no credentials)."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "FSSPEC_GS_TOKEN": "anon"}

    def options(self) -> list[str]:
        """The same, given as storage options."""
        return ["--storage-option", f"endpoint_url={self.endpoint}",
                "--storage-option", "token=anon"]

    def _client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="upconv-test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})

    def make_bucket(self, name: str) -> None:
        self._client().create_bucket(name)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        return {blob.name: blob.download_as_bytes()
                for blob in self._client().list_blobs(bucket, prefix=prefix)}

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self._client().bucket(bucket).blob(key).upload_from_string(data)

    def stop(self) -> None:
        self.server.stop()


class Azurite:
    """Azurite's blob service (``npm install azurite``), a process of its own, in memory."""

    scheme = "az"

    def __init__(self, command: str) -> None:
        self.process = subprocess.Popen(
            [command, "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
             "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        said = []
        for line in self.process.stdout:  # until it says where it listens (an event)
            said.append(line)
            found = re.search(r"successfully listens on (http://\S+)", line)
            if found:
                self.endpoint = f"{found.group(1).rstrip('/')}/{AZURITE_ACCOUNT}"
                break
        else:
            self.process.wait()
            self.process.stdout.close()
            raise RuntimeError(f"Azurite did not start: {''.join(said)}")
        # what it says later is read and dropped, so that it never waits on a full pipe
        self.drain = threading.Thread(target=self.process.stdout.read, daemon=True)
        self.drain.start()

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};BlobEndpoint={self.endpoint};")

    def environment(self) -> dict[str, str]:
        """What a user of the emulator sets: its connection string (adlfs reads
        ``AZURE_STORAGE_CONNECTION_STRING``)."""
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def options(self) -> list[str]:
        """The same, given as a storage option."""
        return ["--storage-option", f"connection_string={self.connection_string}"]

    def _client(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def make_bucket(self, name: str) -> None:
        self._client().create_container(name)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        container = self._client().get_container_client(bucket)
        return {blob.name: container.download_blob(blob.name).readall()
                for blob in container.list_blobs(name_starts_with=prefix or None)}

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self._client().get_blob_client(bucket, key).upload_blob(data, overwrite=True)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.drain.join()  # (the end of its output: it has exited)
        self.process.stdout.close()


def azurite_command() -> str | None:
    """Azurite's blob server: ``UPCONV_AZURITE`` (set by ``.ci/run``, which installs it),
    else the one ``npm install --prefix .ci/azurite azurite`` puts in the repository, else
    one on the PATH."""
    named = os.environ.get("UPCONV_AZURITE")
    if named:
        return named
    local = ROOT / ".ci" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


@pytest.fixture(scope="session")
def gcs_server():
    pytest.importorskip("gcsfs", reason="the gs:// tests need gcsfs")
    pytest.importorskip("gcp_storage_emulator", reason="the gs:// tests need "
                        "gcp-storage-emulator")
    server = GcsEmulator()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite_server():
    pytest.importorskip("adlfs", reason="the az:// tests need adlfs")
    command = azurite_command()
    if command is None:
        pytest.skip("the az:// tests need Azurite: npm install --prefix .ci/azurite azurite "
                    "(.ci/run does)")
    server = Azurite(command)
    yield server
    server.stop()


_buckets = iter(range(1_000_000))


@pytest.fixture(params=["gs", "az"])
def store(request, monkeypatch, tmp_path):
    """A running emulator, its environment set as a user would, and a new empty bucket
    (container) in it: ``(server, "SCHEME://NAME")``."""
    import fsspec

    server = request.getfixturevalue("gcs_server" if request.param == "gs" else
                                     "azurite_server")
    for name in list(os.environ):
        if name.startswith(("FSSPEC_", "AZURE_", "GOOGLE_", "STORAGE_EMULATOR")):
            monkeypatch.delenv(name)
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)
    conf: dict = {}
    fsspec.config.set_conf_env(conf)  # (fsspec reads FSSPEC_* when imported: again, now)
    monkeypatch.setattr(fsspec.config, "conf", conf)
    fresh_filesystems()
    name = f"upconv-test-{next(_buckets)}"
    server.make_bucket(name)
    yield server, f"{server.scheme}://{name}"
    fresh_filesystems()


def bucket_name(url: str) -> str:
    return url.split("://", 1)[1]


@pytest.fixture
def photos(tmp_path):
    make_images(tmp_path / "in", 3)
    make_images(tmp_path / "in" / "deeper", 2)
    return tmp_path / "in"


def upload(server, url: str, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            server.put(bucket_name(url), f"{prefix}/{path.relative_to(folder).as_posix()}",
                       path.read_bytes())


def test_a_batch_to_and_from_a_bucket_equals_the_local_batch(tmp_path, capsys, store,
                                                             photos):
    server, bucket = store
    local = tmp_path / "local"
    assert run(["scale", str(photos), "-o", str(local), "-f", "2", "-r", "--jobs", "1",
                "--quiet"]) == 0
    expected = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*.png")}
    # local files to objects
    assert run(["scale", str(photos), "-o", f"{bucket}/out", "-f", "2", "-r", "--jobs", "1",
                "--quiet"]) == 0, capsys.readouterr().err
    assert server.objects(bucket_name(bucket), "out/") == {
        f"out/{k}": v for k, v in expected.items()}
    # objects to objects, in two worker processes given the options explicitly (they are
    # forked from a server process that keeps the environment of the test that started it)
    upload(server, bucket, photos, "in")
    assert run(["scale", f"{bucket}/in", "-o", f"{bucket}/again", "-f", "2", "-r",
                "--jobs", "2", "--quiet", *server.options()]) == 0, capsys.readouterr().err
    assert server.objects(bucket_name(bucket), "again/") == {
        f"again/{k}": v for k, v in expected.items()}
    # objects to local files; without --recursive only the prefix's own level
    assert run(["scale", f"{bucket}/in", "-o", str(tmp_path / "back"), "-f", "2",
                "--jobs", "1", "--quiet"]) == 0
    back = {p.relative_to(tmp_path / "back").as_posix(): p.read_bytes()
            for p in (tmp_path / "back").rglob("*.png")}
    assert back == {k: v for k, v in expected.items() if "/" not in k}


def test_objects_are_replaced_only_with_overwrite_and_kept_with_skip_existing(
        capsys, store, photos):
    server, bucket = store
    target, name = f"{bucket}/out", ["--name", "{stem}.{ext}", "--jobs", "1"]
    assert run(["scale", str(photos), "-o", target, "-f", "2", "--quiet", *name]) == 0
    before = server.objects(bucket_name(bucket))
    assert len(before) == 3
    assert run(["scale", str(photos), "-o", target, "-f", "3", "--quiet", *name]) == 1
    assert "exists" in capsys.readouterr().err
    assert server.objects(bucket_name(bucket)) == before
    assert run(["scale", str(photos), "-o", target, "-f", "3", "--skip-existing",
                "--quiet", *name]) == 0
    assert server.objects(bucket_name(bucket)) == before
    assert run(["scale", str(photos), "-o", target, "-f", "3", "-y", "--quiet", *name]) == 0
    after = server.objects(bucket_name(bucket))
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)


def test_reports_kernels_and_fits_on_objects(tmp_path, capsys, store, photos):
    server, bucket = store
    source = str(sorted(photos.glob("*.png"))[0])
    assert run(["scale", source, f"{bucket}/x.png", "-f", "2", "--report",
                f"{bucket}/x.json", "--quiet"]) == 0, capsys.readouterr().err
    stored = server.objects(bucket_name(bucket))
    assert json.loads(stored["x.json"])["checkerboard"]["score"] >= 0
    assert run(["scale", source, str(tmp_path / "x.png"), "-f", "2", "--quiet"]) == 0
    assert stored["x.png"] == (tmp_path / "x.png").read_bytes()
    assert run(["report", f"{bucket}/x.png", "-f", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == [192, 192]
    assert run(["fit", source, f"{bucket}/x.png", "-o", f"{bucket}/k.json", "--size",
                "4"]) == 0, capsys.readouterr().err
    assert run(["scale", source, str(tmp_path / "t.png"), "-m", "transpose", "--kernel",
                f"{bucket}/k.json", "--quiet"]) == 0, capsys.readouterr().err
    assert run(["fit", source, str(tmp_path / "x.png"), "-o", str(tmp_path / "k.json"),
                "--size", "4"]) == 0
    fitted, local = (json.loads(text) for text in (
        server.objects(bucket_name(bucket))["k.json"], (tmp_path / "k.json").read_text()))
    assert fitted.pop("trained_on")[1] == f"{bucket}/x.png"
    assert local.pop("trained_on")[1] == str(tmp_path / "x.png")
    assert fitted == local


def test_a_missing_bucket_is_one_line_and_writes_nothing(tmp_path, capsys, store, photos):
    server, bucket = store
    scheme = bucket.split("://")[0]
    source = str(sorted(photos.glob("*.png"))[0])
    assert run(["scale", f"{scheme}://no-such-bucket-upconv/x.png", str(tmp_path / "x.png"),
                "-f", "2"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no-such-bucket-upconv/x.png" in err
    assert not (tmp_path / "x.png").exists()
    assert run(["scale", source, f"{scheme}://no-such-bucket-upconv/x.png", "-f", "2"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no-such-bucket-upconv" in err
    assert "Traceback" not in err
    # a big .npy streamed in parts to it: the same
    np.save(tmp_path / "big.npy", np.zeros((300, 200, 3), np.float32))
    assert run(["scale", str(tmp_path / "big.npy"), f"{scheme}://no-such-bucket-upconv/x.npy",
                "-f", "2", "--tile", "64"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-bucket-upconv/x.npy" in err, err
    if scheme == "az":  # (Azure names what is missing; the GCS emulator does not)
        assert err.endswith(": no such bucket 'no-such-bucket-upconv'"), err


@pytest.mark.parametrize("store", ["az"], indirect=True)
def test_a_wrong_azure_key_is_one_line_without_the_key(tmp_path, capsys, store, big_npy):
    """Azure's refusal in plain words, whole or in parts, and the key never shown."""
    server, bucket = store
    path, _ = big_npy
    wrong = "d3Jvbmcga2V5IGZvciB1cGNvbnYncyB0ZXN0czogbm90IGEgcmVhbCBvbmUuLi4="
    options = ["--storage-option", "connection_string=" + server.connection_string.replace(
        f"AccountKey={AZURITE_KEY}", f"AccountKey={wrong}")]
    for output in ("x.png", "x.npy"):
        source = str(path) if output.endswith(".npy") else str(ROOT / "sample_images" /
                                                               "chelsea.png")
        assert run(["scale", source, f"{bucket}/{output}", "-f", "2", "--tile", "64",
                    *options]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "access denied" in err, err
        assert wrong not in err and AZURITE_KEY not in err
    assert server.objects(bucket_name(bucket)) == {}


def test_a_big_npy_from_and_to_a_bucket_equals_the_streamed_file(tmp_path, capsys, store,
                                                                 rng):
    """Read in ranges, one band's rows at a time; sent in parts (below)."""
    server, bucket = store
    path = tmp_path / "in.npy"
    np.save(path, rng.random((300, 200, 3)).astype(np.float32))
    assert run(["scale", str(path), str(tmp_path / "local.npy"), "-f", "2", "--tile", "64",
                "--quiet"]) == 0
    expected = (tmp_path / "local.npy").read_bytes()
    server.put(bucket_name(bucket), "in.npy", path.read_bytes())
    assert run(["scale", f"{bucket}/in.npy", f"{bucket}/out.npy", "-f", "2", "--tile", "64",
                "--quiet"]) == 0, capsys.readouterr().err
    assert server.objects(bucket_name(bucket), "out.npy")["out.npy"] == expected
    assert run(["scale", f"{bucket}/in.npy", str(tmp_path / "back.npy"), "-f", "2",
                "--tile", "64", "--quiet"]) == 0
    assert (tmp_path / "back.npy").read_bytes() == expected


def block_list(server, bucket: str, key: str) -> tuple[list, list]:
    """An Azure blob's committed and uncommitted blocks (azure-storage-blob)."""
    return server._client().get_blob_client(bucket, key).get_block_list("all")


def counting_parts(monkeypatch) -> list[int]:
    """The numbers of the parts the streamed job computes and sends, as it does."""
    import upconv.pipeline

    real = upconv.pipeline.upload_bands
    numbers = []

    def counted(*args):
        numbers.append(args[-1][0])  # (the part's number)
        return real(*args)

    monkeypatch.setattr(upconv.pipeline, "upload_bands", counted)
    return numbers


def test_a_big_npy_goes_up_in_parts_made_whole_at_the_end(tmp_path, capsys, store, big_npy,
                                                          monkeypatch):
    """Streamed a part (a few bands) at a time, never gathered whole: to Azure each part a
    block, the blob made by committing their list; to GCS each part an object of its own,
    the object composed of them and the parts deleted. The same bytes as the local file,
    and nothing else left in the bucket."""
    from upconv import storage

    server, bucket = store
    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)  # (4 parts here)
    monkeypatch.setattr(storage, "_GCS_MOST_COMPOSED", 3)  # (GCS: composed in two rounds)
    gathered = []
    monkeypatch.setattr(storage, "write_bytes", lambda url, data: gathered.append(url))
    path, expected = big_npy
    server.put(bucket_name(bucket), "in.npy", path.read_bytes())
    for source in (f"{bucket}/in.npy", str(path)):
        parts = counting_parts(monkeypatch)
        assert run(["scale", source, f"{bucket}/sub/out.npy", "-f", "2", "--tile", "64",
                    "-y", "--quiet"]) == 0, capsys.readouterr().err
        assert sorted(parts) == [1, 2, 3, 4]
        assert server.objects(bucket_name(bucket)) == {"in.npy": path.read_bytes(),
                                                       "sub/out.npy": expected}
        if server.scheme == "az":
            committed, uncommitted = block_list(server, bucket_name(bucket), "sub/out.npy")
            assert len(committed) == 4 and not uncommitted
    assert not gathered


@pytest.mark.parametrize("store", ["gs"], indirect=True)
def test_gcs_parts_are_deleted_by_name_and_a_failed_deletion_is_a_warning(
        tmp_path, capsys, store, big_npy, monkeypatch):
    """The parts' folder is listed as it is named (a folder called ``run[1]`` is no
    pattern); and where the parts cannot be deleted (no delete permission, say), the object
    is made all the same, and a one-line warning names the folder left."""
    import gcsfs

    from upconv import storage

    server, bucket = store
    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)
    path, expected = big_npy
    assert run(["scale", str(path), f"{bucket}/run[1]/out.npy", "-f", "2", "--tile", "64",
                "--quiet"]) == 0, capsys.readouterr().err
    assert server.objects(bucket_name(bucket)) == {"run[1]/out.npy": expected}

    async def refused(self, path, **kwargs):
        raise PermissionError(403, "storage.objects.delete denied")

    monkeypatch.setattr(gcsfs.GCSFileSystem, "_rm_file", refused)
    assert run(["scale", str(path), f"{bucket}/again.npy", "-f", "2", "--tile", "64",
                "--quiet"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"upconv: warning: {bucket}/again.npy: written, but its parts "
                          "could not be deleted") and len(err.splitlines()) == 1, err
    assert f"{bucket}/.upconv-parts-" in err
    objects = server.objects(bucket_name(bucket))
    assert objects["again.npy"] == expected
    assert sorted(name.split("/")[0] for name in objects if name.startswith(".upconv-parts-"))


@pytest.mark.parametrize("how", ["a failed part", "Ctrl-C"])
def test_a_stream_cut_short_leaves_the_old_object_and_no_parts(tmp_path, capsys, store,
                                                               big_npy, monkeypatch, how):
    """The third part fails to go, or Ctrl-C comes as the third part is computed: one line
    (status 1, or 130), the object that was under the name as it was, and no part left to
    see (Azure's staged blocks are never committed; GCS's part objects are deleted)."""
    from upconv import storage

    server, bucket = store
    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)
    path, _ = big_npy
    server.put(bucket_name(bucket), "out.npy", b"the old object")
    if how == "Ctrl-C":
        interrupt_at_part(monkeypatch, 3)
    elif server.scheme == "az":
        real_request = storage._azure_blob_request
        staged = []

        def third_block_fails(url, method, **kwargs):
            if method == "stage_block":
                staged.append(kwargs["block_id"])
                if len(staged) == 3:
                    raise ConnectionResetError(104, "Connection reset by peer")
            return real_request(url, method, **kwargs)

        monkeypatch.setattr(storage, "_azure_blob_request", third_block_fails)
    else:
        import gcsfs

        real_pipe = gcsfs.GCSFileSystem._pipe_file
        sent = []

        async def third_part_fails(self, path, data, *args, **kwargs):
            if ".upconv-parts-" in path:
                sent.append(path)
                if len(sent) == 3:
                    raise ConnectionResetError(104, "Connection reset by peer")
            return await real_pipe(self, path, data, *args, **kwargs)

        monkeypatch.setattr(gcsfs.GCSFileSystem, "_pipe_file", third_part_fails)
    status = run(["scale", str(path), f"{bucket}/out.npy", "-f", "2", "--tile", "64", "-y"])
    err = capsys.readouterr().err
    if how == "Ctrl-C":
        assert status == 130 and err.strip() == "upconv: error: interrupted"
    else:
        assert status == 1 and len(err.strip().splitlines()) == 1, err
        assert f"{bucket}/out.npy" in err and "Traceback" not in err
    assert server.objects(bucket_name(bucket)) == {"out.npy": b"the old object"}
    if server.scheme == "az":
        committed, _ = block_list(server, bucket_name(bucket), "out.npy")
        assert len(committed) <= 1  # (the old blob's own, if it has one)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_in_a_bucket_equals_the_local_result(tmp_path, capsys, store, rng, zarr_format):
    zarr = pytest.importorskip("zarr", minversion="3")
    server, bucket = store
    image = rng.random((53, 71, 3))
    array = zarr.create_array(str(tmp_path / "in.zarr"), shape=image.shape,
                              chunks=(16, 16, 3), dtype=image.dtype, zarr_format=zarr_format)
    array[...] = image
    for path in sorted((tmp_path / "in.zarr").rglob("*")):
        if path.is_file():
            server.put(bucket_name(bucket), "in.zarr/" + path.relative_to(
                tmp_path / "in.zarr").as_posix(), path.read_bytes())
    assert run(["scale", f"{bucket}/in.zarr", f"{bucket}/out.zarr", "-f", "2", "-m",
                "bilinear", "--quiet"]) == 0, capsys.readouterr().err
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bilinear", "--quiet"]) == 0
    stored = server.objects(bucket_name(bucket), "out.zarr/")
    local = {"out.zarr/" + p.relative_to(tmp_path / "out.zarr").as_posix(): p.read_bytes()
             for p in (tmp_path / "out.zarr").rglob("*") if p.is_file()}
    assert stored.keys() == local.keys()
    assert {k: v for k, v in stored.items() if not k.endswith(("zarr.json", ".zarray"))} == {
        k: v for k, v in local.items() if not k.endswith(("zarr.json", ".zarray"))}
    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    import upconv

    np.testing.assert_array_equal(got, upconv.scale(image, 2, "bilinear"))
    # a second command in this process, on the same bucket: new sessions, not the first
    # command's, closed as it ended
    assert run(["scale", f"{bucket}/out.zarr", str(tmp_path / "back.zarr"), "-f", "1",
                "--quiet"]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "back.zarr"))[...], got)
    # replaced with -y by a smaller array: the old store's objects all go first (as listed,
    # then removed in bulk), so none of its chunks is left beside the new ones
    assert run(["scale", f"{bucket}/in.zarr", f"{bucket}/out.zarr", "-f", "1", "-y",
                "--quiet"]) == 0, capsys.readouterr().err
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "same.zarr"), "-f", "1",
                "--quiet"]) == 0
    stored = server.objects(bucket_name(bucket), "out.zarr/")
    assert stored.keys() == {"out.zarr/" + p.relative_to(tmp_path / "same.zarr").as_posix()
                             for p in (tmp_path / "same.zarr").rglob("*") if p.is_file()}


@pytest.mark.parametrize("store", ["az", "gs"], indirect=True)
def test_zarr_chunks_into_azure_are_sent_in_blocks(tmp_path, capsys, store, rng,
                                                   monkeypatch):
    """Zarr 3 chunks into Azure are streamed as blocks of PART_SIZE (16 KiB here), the blob
    committed whole once its last rows are in; into GCS they are sent whole (its uploads
    in parts would be objects of their own inside the store). The values as in memory."""
    zarr = pytest.importorskip("zarr", minversion="3")
    import upconv
    from upconv import storage

    server, bucket = store
    monkeypatch.setattr(storage, "PART_SIZE", 16 << 10)
    image = rng.random((40, 50, 3), dtype=np.float32)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=image.shape, chunks=(32, 32, 3),
                      dtype=image.dtype, compressors=None)[...] = image
    assert run(["scale", str(tmp_path / "in.zarr"), f"{bucket}/out.zarr", "-f", "2", "-m",
                "bilinear", "--quiet"]) == 0, capsys.readouterr().err
    keys = sorted(key for key in server.objects(bucket_name(bucket), "out.zarr/")
                  if "/c/" in key)
    assert len(keys) == 4, keys  # (64x64x3 float32 chunks, raw: 48 KiB each, padded whole)
    for key in keys if server.scheme == "az" else []:
        committed, uncommitted = block_list(server, bucket_name(bucket), key)
        assert len(committed) == 3 and not uncommitted, key
    assert run(["scale", f"{bucket}/out.zarr", str(tmp_path / "back.zarr"), "-f", "1",
                "--quiet"]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "back.zarr"))[...],
                                  upconv.scale(image, 2, "bilinear"))


def test_commands_in_a_process_of_their_own_print_nothing_but_their_lines(tmp_path, store,
                                                                        rng):
    """As a user runs them: no warning from the libraries (aiohttp's about large bodies),
    and no traceback at exit from a filesystem's finalizer (adlfs's closes its session on
    zarr's loop, stopped by then: upconv runs it before)."""
    zarr = pytest.importorskip("zarr", minversion="3")
    server, bucket = store
    np.save(tmp_path / "in.npy", rng.random((700, 600, 3)).astype(np.float32))  # 5 MB
    zarr.create_array(str(tmp_path / "in.zarr"), shape=(40, 50), chunks=(16, 16),
                      dtype="f4")[...] = 0.5
    commands = [[str(tmp_path / "in.npy"), f"{bucket}/in.npy", "-f", "1"],
                [f"{bucket}/in.npy", f"{bucket}/out.npy", "-f", "2", "--tile", "256"],
                [str(tmp_path / "in.zarr"), f"{bucket}/in.zarr", "-f", "1"],
                [f"{bucket}/in.zarr", f"{bucket}/out.zarr", "-f", "2"],
                [f"{bucket}/no-such.zarr", str(tmp_path / "x.zarr"), "-f", "2"]]
    for arguments in commands:
        done = subprocess.run([sys.executable, "-m", "upconv", "scale", *arguments, "--quiet"],
                              capture_output=True, text=True, timeout=300)
        if "no-such" in arguments[0]:
            assert done.returncode == 1
            assert done.stderr.strip().splitlines() == [
                f"upconv: error: {bucket}/no-such.zarr: no Zarr store there"]
        else:
            assert done.returncode == 0 and done.stderr == "", (arguments, done.stderr)
    assert server.objects(bucket_name(bucket), "out.npy")["out.npy"][:6] == b"\x93NUMPY"


def test_a_zarr_job_on_a_cluster_reads_and_writes_the_bucket(tmp_path, capsys, store, rng,
                                                             dask_cluster):
    """On a LocalCluster of process workers, which know nothing of the emulator but the
    storage options the command sends with its tasks: the same array as here."""
    zarr = pytest.importorskip("zarr", minversion="3")
    server, bucket = store
    image = rng.random((70, 90))
    zarr.create_array(str(tmp_path / "in.zarr"), shape=image.shape, chunks=(16, 16),
                      dtype=image.dtype)[...] = image
    assert run(["scale", str(tmp_path / "in.zarr"), f"{bucket}/in.zarr", "-f", "1",
                "--quiet"]) == 0, capsys.readouterr().err
    assert run(["scale", f"{bucket}/in.zarr", f"{bucket}/out.zarr", "-f", "2", "-m",
                "bicubic", "--dask", dask_cluster.scheduler_address, "--quiet",
                *server.options()]) == 0, capsys.readouterr().err
    assert run(["scale", f"{bucket}/out.zarr", str(tmp_path / "back.zarr"), "-f", "1",
                "--quiet"]) == 0, capsys.readouterr().err
    import upconv

    got = zarr.open_array(str(tmp_path / "back.zarr"))[...]
    assert np.abs(got - upconv.scale(image, 2, "bicubic")).max() < 1e-12


def test_a_big_npy_job_on_a_cluster_sends_its_parts_from_the_workers(
        tmp_path, capsys, store, big_npy, monkeypatch, dask_cluster):
    """With --dask, each worker computes its parts and sends them itself (none from here),
    knowing the emulator only from the storage options sent with the tasks; the object is
    made whole here, the same bytes as the local file."""
    from upconv import storage

    server, bucket = store
    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)  # (4 parts)
    kind = storage.AzureBlockUpload if server.scheme == "az" else storage.GcsComposeUpload

    def not_here(self, number, data):
        raise AssertionError("a part sent from the command's own process")

    monkeypatch.setattr(kind, "send", not_here)
    gathered = []
    monkeypatch.setattr(storage, "write_bytes", lambda url, data: gathered.append(url))
    path, expected = big_npy
    server.put(bucket_name(bucket), "in.npy", path.read_bytes())
    assert run(["scale", f"{bucket}/in.npy", f"{bucket}/out.npy", "-f", "2", "--tile", "64",
                "--dask", dask_cluster.scheduler_address, "--quiet",
                *server.options()]) == 0, capsys.readouterr().err
    assert server.objects(bucket_name(bucket)) == {"in.npy": path.read_bytes(),
                                                   "out.npy": expected}
    assert not gathered
    if server.scheme == "az":
        committed, _ = block_list(server, bucket_name(bucket), "out.npy")
        assert len(committed) == 4


def _hold_back_part(late: int, failing: int, event: str) -> None:
    """On a worker: the streamed job's part ``failing`` fails to go, and part ``late`` is
    sent only once the Dask event ``event`` is set (or after 5 s), which then sets the
    event ``event-sent``."""
    import upconv.pipeline

    real = getattr(upconv.pipeline, "_real_upload_bands", upconv.pipeline.upload_bands)

    def held_back(*args):
        number = args[-1][0]  # (the part's number)
        if number == failing:
            raise ConnectionResetError(104, "Connection reset by peer")
        if number == late:
            from distributed import Event

            Event(event).wait(5)
            try:
                return real(*args)
            finally:
                Event(f"{event}-sent").set()
        return real(*args)

    upconv.pipeline._real_upload_bands = real
    upconv.pipeline.upload_bands = held_back


def _restore_parts() -> None:
    import upconv.pipeline

    upconv.pipeline.upload_bands = upconv.pipeline.__dict__.pop(
        "_real_upload_bands", upconv.pipeline.upload_bands)


@pytest.mark.parametrize("store", ["gs"], indirect=True)
def test_a_failed_job_on_a_cluster_gives_up_its_upload_after_its_running_parts(
        tmp_path, capsys, store, big_npy, monkeypatch, dask_cluster):
    """A part fails on one worker while another worker is still computing its own: the
    upload is given up (its part objects deleted) only once that part has gone, so that
    no part is left behind. (The late part waits for the upload to be given up: without
    the wait for running tasks, it would land after the deletion.)"""
    from distributed import Client, Event

    from upconv import storage

    server, bucket = store
    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)  # (4 parts)
    path, _ = big_npy
    name = f"given-up-{tmp_path.name}"
    with Client(dask_cluster.scheduler_address) as client:
        real_abort = storage.GcsComposeUpload.abort

        def abort_and_tell(self):
            real_abort(self)
            Event(name, client=client).set()

        monkeypatch.setattr(storage.GcsComposeUpload, "abort", abort_and_tell)
        client.run(_hold_back_part, 1, 2, name)
        try:
            status = run(["scale", str(path), f"{bucket}/out.npy", "-f", "2", "--tile", "64",
                          "--dask", dask_cluster.scheduler_address, *server.options()])
            # (the late part has gone by now; were it not waited for, it would go now)
            assert Event(f"{name}-sent", client=client).wait(30)
        finally:
            client.run(_restore_parts)
    err = capsys.readouterr().err.strip().splitlines()
    # the wait said, then the job's own error, one line
    assert status == 1 and len(err) == 2, err
    # (the held part, and any other the free worker had started before the failure came)
    assert re.match(r"upconv: waiting for [12] task\(s\) still running on the cluster",
                    err[0]), err
    assert err[1].startswith("upconv: error: ") and "Connection reset" in err[1], err
    assert server.objects(bucket_name(bucket)) == {}
