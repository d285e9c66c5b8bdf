"""upconv's commands on objects in a bucket, against a real S3-compatible server (moto's,
on loopback) reached through s3fs: the same bytes as on a local disk, the same promises
(whole objects or none, nothing replaced without -y, resumable batches), one-line errors
without secrets."""

from __future__ import annotations

import errno
import functools
import json
import threading
import time
import uuid

import numpy as np
import pytest
from conftest import (
    FAKE_ACCESS_KEY_ID,
    FAKE_SECRET,
    S3Server,
    intercept,
    interrupt_at_part,
    make_images,
)

from upconv.cli import run


def objects(server, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under the prefix, read independently with boto3."""
    client = server.client()
    name = bucket.removeprefix("s3://")
    listed = client.list_objects_v2(Bucket=name, Prefix=prefix).get("Contents", [])
    return {item["Key"]: client.get_object(Bucket=name, Key=item["Key"])["Body"].read()
            for item in listed}


def upload(server, bucket: str, folder, prefix: str) -> None:
    client = server.client()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=bucket.removeprefix("s3://"), Key=key,
                              Body=path.read_bytes())


@pytest.fixture
def photos(tmp_path):
    make_images(tmp_path / "in", 3)
    make_images(tmp_path / "in" / "deeper", 2)
    return tmp_path / "in"


def test_a_batch_to_and_from_a_bucket_equals_the_local_batch(tmp_path, capsys, bucket,
                                                             s3_env, photos):
    local = tmp_path / "local"
    assert run(["scale", str(photos), "-o", str(local), "-f", "2", "-r", "--jobs", "1",
                "--quiet"]) == 0
    expected = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*.png")}
    # local files to objects
    assert run(["scale", str(photos), "-o", f"{bucket}/out", "-f", "2", "-r", "--jobs", "1",
                "--quiet"]) == 0
    assert objects(s3_env, bucket, "out/") == {f"out/{k}": v for k, v in expected.items()}
    # objects to objects, through two worker processes given the options explicitly
    upload(s3_env, bucket, photos, "in")
    assert run(["scale", f"{bucket}/in", "-o", f"{bucket}/again", "-f", "2", "-r",
                "--jobs", "2", "--quiet",
                "--storage-option", f"endpoint_url={s3_env.endpoint}",
                "--storage-option", f"key={FAKE_ACCESS_KEY_ID}",
                "--storage-option", f"secret={FAKE_SECRET}"]) == 0, capsys.readouterr().err
    assert objects(s3_env, bucket, "again/") == {f"again/{k}": v for k, v in expected.items()}
    # objects to local files; without --recursive only the prefix's own level
    assert run(["scale", f"{bucket}/in", "-o", str(tmp_path / "back"), "-f", "2",
                "--jobs", "1", "--quiet"]) == 0
    back = {p.relative_to(tmp_path / "back").as_posix(): p.read_bytes()
            for p in (tmp_path / "back").rglob("*.png")}
    assert back == {k: v for k, v in expected.items() if "/" not in k}


@pytest.mark.parametrize("listing_from", [1, 1000], ids=["listed", "asked-one-by-one"])
def test_objects_are_replaced_only_with_overwrite_and_kept_with_skip_existing(
        tmp_path, capsys, bucket, s3_env, photos, monkeypatch, listing_from):
    from upconv import storage

    monkeypatch.setattr(storage, "LISTING_FROM", listing_from)
    # One process: a batch's worker server, started by an earlier test, keeps the environment
    # it started in (a user's command starts its own with the user's environment).
    target, name = f"{bucket}/out", ["--name", "{stem}.{ext}", "--jobs", "1"]
    assert run(["scale", str(photos), "-o", target, "-f", "2", "--quiet", *name]) == 0
    before = objects(s3_env, bucket)
    assert run(["scale", str(photos), "-o", target, "-f", "3", "--quiet", *name]) == 1
    assert "exists" in capsys.readouterr().err
    assert objects(s3_env, bucket) == before
    assert run(["scale", str(photos), "-o", target, "-f", "3", "--skip-existing",
                "--quiet", *name]) == 0
    assert objects(s3_env, bucket) == before
    assert run(["scale", str(photos), "-o", target, "-f", "3", "-y", "--quiet", *name]) == 0
    after = objects(s3_env, bucket)
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)
    single = f"{bucket}/one.png"
    source = str(sorted(photos.glob("*.png"))[0])
    assert run(["scale", source, single, "-f", "2", "--quiet"]) == 0
    assert run(["scale", source, single, "-f", "2", "--quiet"]) == 1
    assert "exists" in capsys.readouterr().err


def test_an_image_and_its_report_go_to_the_bucket_together(tmp_path, capsys, bucket,
                                                           s3_env, photos):
    source = str(sorted(photos.glob("*.png"))[0])
    assert run(["scale", source, f"{bucket}/x.png", "-f", "2", "--report",
                f"{bucket}/x.json", "--quiet"]) == 0
    stored = objects(s3_env, bucket)
    assert json.loads(stored["x.json"])["checkerboard"]["score"] >= 0
    local = tmp_path / "x.png"
    assert run(["scale", source, str(local), "-f", "2", "--quiet"]) == 0
    assert stored["x.png"] == local.read_bytes()
    # the report of an object, a kernel fitted on objects, a kernel read from the bucket
    assert run(["report", f"{bucket}/x.png", "-f", "2", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["image"] == f"{bucket}/x.png" and document["size"] == [192, 192]
    upload(s3_env, bucket, photos, "pairs")
    low = f"{bucket}/pairs/p00.png"
    assert run(["scale", low, f"{bucket}/pairs/high.png", "-f", "2", "--quiet"]) == 0
    assert run(["fit", low, f"{bucket}/pairs/high.png", "-o", f"{bucket}/k.json",
                "--size", "4"]) == 0, capsys.readouterr().err
    assert run(["scale", low, str(tmp_path / "t.png"), "-m", "transpose", "--kernel",
                f"{bucket}/k.json", "--quiet"]) == 0, capsys.readouterr().err


def test_a_missing_bucket_and_refused_credentials_are_one_line_without_secrets(
        tmp_path, capsys, s3_env, photos, monkeypatch):
    source = str(sorted(photos.glob("*.png"))[0])
    assert run(["scale", source, "s3://no-such-bucket-upconv/x.png", "-f", "2"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no-such-bucket-upconv" in err
    assert FAKE_SECRET not in err
    assert run(["report", "s3://no-such-bucket-upconv/x.png",
                "--storage-option", "secret=hunter2-upconv-secret"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "hunter2" not in err
    assert run(["scale", source, "out.png", "--storage-option", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_a_server_that_stops_mid_batch_leaves_whole_objects_and_a_rerun_completes(
        tmp_path, capsys, s3_env, monkeypatch):
    make_images(tmp_path / "many", 6, side=160)
    server = S3Server()  # its own, to stop; moto keeps the objects in this process
    bucket = f"upconv-stopped-{uuid.uuid4().hex[:8]}"  # moto keeps every bucket made here
    server.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    from conftest import fresh_filesystems

    fresh_filesystems()
    status = []
    batch = threading.Thread(target=lambda: status.append(run(
        ["scale", str(tmp_path / "many"), "-o", f"s3://{bucket}/out", "-f", "2",
         "--jobs", "1", "--quiet"])))
    batch.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not objects(server, f"s3://{bucket}"):
        time.sleep(0.01)  # polling for the first object (an event)
    server.stop()
    batch.join(timeout=120)
    fresh_filesystems()  # let go of the connections to the stopped server
    assert status == [1]
    err = capsys.readouterr().err
    failures = [line for line in err.splitlines() if "cannot reach" in line]
    assert failures and all(line.startswith("upconv:") for line in err.splitlines())
    again = S3Server()  # the same objects, on a new port
    monkeypatch.setenv("AWS_ENDPOINT_URL", again.endpoint)
    fresh_filesystems()
    try:
        stored = objects(again, f"s3://{bucket}")
        assert 0 < len(stored) < 6
        local = tmp_path / "local"
        assert run(["scale", str(tmp_path / "many"), "-o", str(local), "-f", "2",
                    "--jobs", "1", "--quiet"]) == 0
        for key, data in stored.items():  # never half an object
            assert data == (local / key.removeprefix("out/")).read_bytes()
        assert run(["scale", str(tmp_path / "many"), "-o", f"s3://{bucket}/out", "-f", "2",
                    "--skip-existing", "--jobs", "1", "--quiet"]) == 0
        assert len(objects(again, f"s3://{bucket}")) == 6
    finally:
        again.stop()


def test_http_urls_are_read_only(tmp_path, capsys, photos):
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(photos))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/p00.png"
        assert run(["scale", url, str(tmp_path / "web.png"), "-f", "2", "--quiet"]) == 0
        assert run(["scale", str(photos / "p00.png"), f"{url}.out.png", "-f", "2"]) == 1
        err = capsys.readouterr().err
        assert "read-only" in err or "read only" in err
    finally:
        server.shutdown()
        server.server_close()
    from PIL import Image

    with Image.open(tmp_path / "web.png") as image, Image.open(photos / "p00.png") as source:
        assert image.size == (2 * source.width, 2 * source.height)


def test_checkpoint_keys_reports_and_prefixes_on_objects(tmp_path, capsys, bucket, s3_env,
                                                         photos):
    """FILE:KEY after a URL, a batch's --report as an object (its lines uploaded at the
    end), a report over a prefix, and an -o that is an object refused."""
    from upconv.checkpoints import save_tensors

    save_tensors({"up.weight": np.full((1, 1, 4, 4), 1 / 16, np.float32)},
                 tmp_path / "ck.safetensors")
    upload(s3_env, bucket, tmp_path, "ck")  # ck/ck.safetensors (and the photos)
    assert run(["kernel", "show", f"{bucket}/ck/ck.safetensors:up.weight", "-f", "2",
                "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["shape"] == [1, 1, 4, 4]
    assert run(["scale", str(photos), "-o", f"{bucket}/out", "-f", "2", "--jobs", "1",
                "--quiet", "--report", f"{bucket}/report.jsonl"]) == 0
    lines = objects(s3_env, bucket)["report.jsonl"].decode().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["file"] for line in lines)
    assert run(["report", f"{bucket}/out", "-f", "2", "--json", "--jobs", "1"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert run(["scale", str(photos), "-o", f"{bucket}/report.jsonl", "-f", "2",
                "--jobs", "1"]) == 1
    assert "is an object, not a prefix" in capsys.readouterr().err


def test_a_failed_second_upload_leaves_a_replaced_object_replaced(tmp_path, capsys, bucket,
                                                                   s3_env, photos):
    """Outputs committed together: when the report's upload fails, the image uploaded
    before it is removed if it is new, and left (replaced) if it replaced one."""
    source = str(sorted(photos.glob("*.png"))[0])
    target = f"{bucket}/x.png"
    assert run(["scale", source, target, "-f", "2", "--report",
                "s3://no-such-bucket-upconv/x.json", "--quiet"]) == 1
    assert "x.png" not in objects(s3_env, bucket)  # new: removed again
    assert run(["scale", source, target, "-f", "2", "--quiet"]) == 0
    assert run(["scale", source, target, "-f", "3", "-y", "--report",
                "s3://no-such-bucket-upconv/x.json", "--quiet"]) == 1
    assert "x.png" in objects(s3_env, bucket)  # replaced: never removed


def test_a_batch_of_objects_starts_its_workers_with_the_storage_backend_imported(
        tmp_path, capsys, bucket, s3_env, photos, monkeypatch):
    """s3fs and botocore are imported once, by the server the workers are forked from,
    which the command starts before it lists the prefixes; a local batch's workers import
    only upconv's pipeline."""
    import multiprocessing.context

    from upconv import batch

    preloads, started = [], []
    monkeypatch.setattr(multiprocessing.context.ForkServerContext, "set_forkserver_preload",
                        lambda self, modules: preloads.append(list(modules)))
    real_expand = batch.expand_inputs
    monkeypatch.setattr("upconv.cli.scale.start_worker_server",
                        lambda paths: started.append(list(paths)))
    monkeypatch.setattr("upconv.cli.scale.expand_inputs",
                        lambda *args: started.append("listed") or real_expand(*args))
    upload(s3_env, bucket, photos, "in")
    # (the options given explicitly: the worker server an earlier test started keeps the
    # environment it started in)
    assert run(["scale", f"{bucket}/in", "-o", f"{bucket}/out", "-f", "2", "--jobs", "2",
                "--quiet", "--storage-option", f"endpoint_url={s3_env.endpoint}",
                "--storage-option", f"key={FAKE_ACCESS_KEY_ID}",
                "--storage-option", f"secret={FAKE_SECRET}"]) == 0, capsys.readouterr().err
    assert started == [[f"{bucket}/in", f"{bucket}/out"], "listed"]
    assert len(preloads) == 1 and preloads[0][:2] == ["upconv.pipeline", "upconv.storage"]
    assert [module.split(".")[0] for module in preloads[0][2:]] == ["s3fs"]  # s3fs.core
    preloads.clear()
    assert batch._worker_context(["in/a.png", "out/a.png"]) is not None
    assert preloads == [["upconv.pipeline"]]


def test_a_batch_job_reads_its_object_in_one_request(tmp_path, bucket, s3_env, photos,
                                                     monkeypatch):
    """The listing's sizes travel with the jobs to the workers: a worker reads its input
    with one GET, not a HEAD asking the size and then a GET."""
    from upconv import storage
    from upconv.batch import expand_inputs, plan_outputs, run_safely
    from upconv.pipeline import ScaleSettings, scale_job

    upload(s3_env, bucket, photos, "in")
    jobs = plan_outputs(expand_inputs([f"{bucket}/in"], False), f"{bucket}/out",
                        "{stem}.{ext}", {"factor": "2", "method": "bicubic"}, None)
    sizes = {path.name: path.stat().st_size for path in photos.glob("*.png")}
    assert {job.input.rsplit("/", 1)[1]: job.input_size for job in jobs} == sizes
    storage._known_sizes.clear()  # as in a worker process, which listed nothing

    async def before(method, kwargs):
        pass

    calls = intercept(monkeypatch, jobs[0].input, before)
    outcome = run_safely(functools.partial(scale_job, ScaleSettings(factor=(2.0, 2.0))),
                         jobs[0])
    assert outcome.status == "done", outcome.error
    assert [method for method, _ in calls] == ["get_object", "put_object"]


def test_an_alias_of_the_input_is_refused_as_output(tmp_path, capsys, bucket, s3_env, photos):
    """s3a:// names the same objects as s3://: writing there would overwrite the input."""
    upload(s3_env, bucket, photos, "in")
    name = bucket.removeprefix("s3://")
    before = objects(s3_env, bucket)
    for output in (f"s3a://{name}/in/p00.png", f"s3a://{name}/in/p00.png/"):
        assert run(["scale", f"{bucket}/in/p00.png", output, "-f", "2", "-y"]) == 1
        err = capsys.readouterr().err
        assert "would overwrite the input" in err and len(err.strip().splitlines()) == 1
    assert objects(s3_env, bucket) == before


def test_storage_options_belong_to_one_command_not_to_the_next_in_the_process(
        tmp_path, bucket, photos, capsys):
    """``upconv.cli.run`` called twice: the second command, given no --storage-option,
    uses the environment's settings, not the first command's options."""
    from upconv import storage

    source = str(sorted(photos.glob("*.png"))[0])
    assert run(["scale", source, f"{bucket}/once/a.png", "-f", "2", "--quiet",
                "--storage-option", "config_kwargs.connect_timeout=7"]) == 0, \
        capsys.readouterr().err
    assert storage.storage_options() == {"config_kwargs": {"connect_timeout": 7}}
    assert run(["report", f"{bucket}/once/a.png", "--json"]) == 0, \
        capsys.readouterr().err
    assert storage.storage_options() == {}
    # A refused option in the first command must not follow either.
    assert run(["report", f"{bucket}/once/a.png", "--json",
                "--storage-option", "no_such_option=1"]) == 1
    assert "no_such_option" in capsys.readouterr().err
    assert run(["report", f"{bucket}/once/a.png", "--json"]) == 0, \
        capsys.readouterr().err


# ------------------------------------------------------------ big .npy arrays, streamed

def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_a_big_npy_is_streamed_from_and_to_a_bucket_band_by_band(tmp_path, bucket, s3_env,
                                                                 big_npy, monkeypatch, capsys):
    """Read with ranged GETs (never whole), written as a multipart upload of parts of a few
    bands each: the same bytes as the streamed job on a local disk, every way round."""
    from upconv import npy, storage

    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)  # (S3's smallest: 4 parts here)
    monkeypatch.setattr(npy, "_HEADER_READ", 20)  # (a header longer than the first read)
    path, expected = big_npy
    name = bucket.removeprefix("s3://")
    s3_env.client().put_object(Bucket=name, Key="in.npy", Body=path.read_bytes())

    async def nothing(method, kwargs):
        return None

    calls = intercept(monkeypatch, f"{bucket}/in.npy", nothing)
    assert run(["scale", f"{bucket}/in.npy", f"{bucket}/out.npy", "-f", "2", "--tile", "64",
                "--quiet"]) == 0, capsys.readouterr().err
    assert objects(s3_env, bucket, "out.npy")["out.npy"] == expected
    methods = [method for method, _ in calls]
    assert methods.count("create_multipart_upload") == 1
    assert methods.count("upload_part") == 4
    assert methods.count("complete_multipart_upload") == 1
    reads = [kwargs for method, kwargs in calls if method == "get_object"]
    assert reads and all("Range" in kwargs for kwargs in reads)
    longest = max(int(end) - int(start) + 1 for start, end in (
        kwargs["Range"].removeprefix("bytes=").split("-") for kwargs in reads))
    assert longest < path.stat().st_size / 4
    # from the bucket to a file, and from a file to the bucket
    assert run(["scale", f"{bucket}/in.npy", str(tmp_path / "back.npy"), "-f", "2",
                "--tile", "64", "--quiet"]) == 0
    assert (tmp_path / "back.npy").read_bytes() == expected
    assert run(["scale", str(path), f"{bucket}/up.npy", "-f", "2", "--tile", "64",
                "--quiet"]) == 0
    assert objects(s3_env, bucket, "up.npy")["up.npy"] == expected
    # a cut-short object is refused before any upload starts
    s3_env.client().put_object(Bucket=name, Key="cut.npy", Body=path.read_bytes()[:-100])
    assert run(["scale", f"{bucket}/cut.npy", f"{bucket}/cut_x2.npy", "-f", "2",
                "--tile", "64"]) == 1
    err = capsys.readouterr().err
    assert "truncated .npy file" in err and len(err.strip().splitlines()) == 1
    assert "cut_x2.npy" not in objects(s3_env, bucket)


@pytest.mark.parametrize("dtype, shape, options", [
    ("uint8", (90, 70, 3), ["-m", "bilinear"]),
    ("uint16", (90, 70), ["-m", "nearest"]),
    ("float64", (90, 70, 2), ["-m", "transpose"]),
    ("float32", (90, 70, 3), ["-m", "bicubic", "--linear-light"]),
    ("uint8", (90, 70, 1), ["-f", "1.5", "-m", "lanczos"]),
], ids=["uint8-bilinear", "uint16-2d-nearest", "float64-transpose", "linear-light",
        "lanczos-x1.5"])
def test_tiles_computed_into_the_part_equal_the_streamed_file(tmp_path, bucket, s3_env, rng,
                                                              dtype, shape, options, capsys):
    """Each tile is computed straight into the part it is sent in: the same bytes as the
    same job streamed into a file, whatever the type, layout and method."""
    values = rng.random(shape)
    array = (values * np.iinfo(dtype).max).astype(dtype) if dtype.startswith("uint") \
        else values.astype(dtype)
    np.save(tmp_path / "in.npy", array)
    factor = [] if "-f" in options else ["-f", "2"]
    common = [*factor, *options, "--tile", "16", "--quiet"]
    assert run(["scale", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"), *common]) == 0, \
        capsys.readouterr().err
    assert run(["scale", str(tmp_path / "in.npy"), f"{bucket}/out.npy", *common]) == 0, \
        capsys.readouterr().err
    assert objects(s3_env, bucket, "out.npy")["out.npy"] == (tmp_path / "out.npy").read_bytes()


def test_a_failed_part_leaves_the_old_object_and_no_upload(tmp_path, bucket, s3_env, big_npy,
                                                           monkeypatch, capsys):
    """The third part fails to go: one line naming the output, the object that was under the
    key unchanged, and the upload aborted (no parts left behind)."""
    from upconv import storage

    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)
    path, _ = big_npy
    name = bucket.removeprefix("s3://")
    s3_env.client().put_object(Bucket=name, Key="out.npy", Body=b"the old object")
    sent = []

    async def third_part_fails(method, kwargs):
        if method == "upload_part":
            sent.append(kwargs["PartNumber"])
            if len(sent) == 3:
                raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    intercept(monkeypatch, f"{bucket}/out.npy", third_part_fails)
    assert run(["scale", str(path), f"{bucket}/out.npy", "-f", "2", "--tile", "64", "-y"]) == 1
    err = capsys.readouterr().err
    assert f"{bucket}/out.npy: cannot reach the storage service" in err
    assert len(err.strip().splitlines()) == 1
    assert objects(s3_env, bucket, "out.npy") == {"out.npy": b"the old object"}
    assert "Uploads" not in s3_env.client().list_multipart_uploads(Bucket=name)
    monkeypatch.undo()


def test_ctrl_c_mid_upload_aborts_it_and_keeps_the_old_object(tmp_path, bucket, s3_env,
                                                              big_npy, monkeypatch, capsys):
    """Ctrl-C after two parts have gone: status 130, one line, the old object as it was,
    and no upload left (its parts deleted)."""
    from upconv import storage

    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)
    path, _ = big_npy
    name = bucket.removeprefix("s3://")
    s3_env.client().put_object(Bucket=name, Key="out.npy", Body=b"the old object")
    interrupt_at_part(monkeypatch, 3)
    assert run(["scale", str(path), f"{bucket}/out.npy", "-f", "2", "--tile", "64", "-y"]) == 130
    assert capsys.readouterr().err.strip() == "upconv: error: interrupted"
    assert objects(s3_env, bucket, "out.npy") == {"out.npy": b"the old object"}
    assert "Uploads" not in s3_env.client().list_multipart_uploads(Bucket=name)


def test_a_streamed_object_and_its_report_are_made_together_or_not_at_all(
        tmp_path, bucket, s3_env, big_npy, monkeypatch, capsys):
    """The upload's completion waits for the command's other outputs: the report failing to
    go leaves no array under the key, and no upload; with both going, both are there."""
    from upconv import storage

    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)
    path, expected = big_npy
    name = bucket.removeprefix("s3://")

    async def the_report_fails(method, kwargs):
        if method == "put_object" and kwargs["Key"] == "r.json":
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    intercept(monkeypatch, f"{bucket}/out.npy", the_report_fails)
    assert run(["scale", str(path), f"{bucket}/out.npy", "-f", "2", "--tile", "64", "--quiet",
                "--report", f"{bucket}/r.json"]) == 1
    err = capsys.readouterr().err
    assert f"{bucket}/r.json: cannot reach the storage service" in err
    assert objects(s3_env, bucket) == {}
    assert "Uploads" not in s3_env.client().list_multipart_uploads(Bucket=name)
    monkeypatch.undo()
    assert run(["scale", str(path), f"{bucket}/out.npy", "-f", "2", "--tile", "64", "--quiet",
                "--report", f"{bucket}/r.json"]) == 0, capsys.readouterr().err
    stored = objects(s3_env, bucket)
    assert stored["out.npy"] == expected and json.loads(stored["r.json"])["size"] == [1200, 1400]


def test_a_tile_too_big_for_one_part_is_refused_before_any_work(tmp_path, bucket, s3_env,
                                                                big_npy, monkeypatch, capsys):
    """S3 takes parts of 5 GiB at most (here made 4 MiB): tiles that would make bigger ones
    are a one-line error naming the output and --tile, before any upload starts."""
    from upconv import storage

    monkeypatch.setattr(storage, "MAX_PART_SIZE", 4 << 20)
    path, _ = big_npy

    async def nothing(method, kwargs):
        return None

    calls = intercept(monkeypatch, f"{bucket}/out.npy", nothing)
    assert run(["scale", str(path), f"{bucket}/out.npy", "-f", "2", "--tile", "700"]) == 1
    err = capsys.readouterr().err
    assert f"{bucket}/out.npy: tiles of 700 rows make parts of" in err and "--tile" in err
    assert len(err.strip().splitlines()) == 1
    assert not [method for method, _ in calls if "multipart" in method]
    assert objects(s3_env, bucket) == {}


def test_ranged_reads_refuse_a_changed_object_and_an_unknown_size_reads_it_whole(
        tmp_path, bucket, s3_env, big_npy, monkeypatch, capsys):
    """A range that comes back short (the object replaced mid-job) is a one-line error; an
    object whose size the service does not give is read whole, as before streaming."""
    from upconv import storage

    path, expected = big_npy
    s3_env.client().put_object(Bucket=bucket.removeprefix("s3://"), Key="in.npy",
                               Body=path.read_bytes())
    assert storage.read_range(f"{bucket}/in.npy", 3, 3) == b""
    fs, _ = storage.filesystem(f"{bucket}/in.npy")
    real = fs.cat_file
    monkeypatch.setattr(fs, "cat_file", lambda path, start=None, end=None, **kw: real(
        path, start=start, end=end, **kw)[:-1] if start else real(path, start=start, end=end,
                                                                   **kw))
    assert run(["scale", f"{bucket}/in.npy", str(tmp_path / "o.npy"), "-f", "2",
                "--tile", "64"]) == 1
    err = capsys.readouterr().err
    assert f"{bucket}/in.npy: changed while being read" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.npy").exists()
    monkeypatch.setattr(fs, "cat_file", real)
    monkeypatch.setattr(storage, "object_size", lambda url: None)
    read_whole = []
    real_read = storage.read_bytes
    monkeypatch.setattr(storage, "read_bytes", lambda url: read_whole.append(url) or
                        real_read(url))
    assert run(["scale", f"{bucket}/in.npy", str(tmp_path / "o.npy"), "-f", "2",
                "--tile", "64", "--quiet"]) == 0
    assert read_whole == [f"{bucket}/in.npy"]
    assert (tmp_path / "o.npy").read_bytes() == expected


def test_a_big_npy_job_on_a_cluster_sends_its_parts_from_the_workers(tmp_path, bucket, s3_env,
                                                                      big_npy, monkeypatch,
                                                                      capsys, dask_cluster):
    """With --dask, the workers read their bands from the bucket and send their parts
    themselves (given the options, not the environment): the same bytes."""
    from upconv import storage

    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)  # (the command plans the parts)
    path, expected = big_npy
    name = bucket.removeprefix("s3://")
    s3_env.client().put_object(Bucket=name, Key="in.npy", Body=path.read_bytes())
    options = ["--storage-option", f"endpoint_url={s3_env.endpoint}",
               "--storage-option", f"key={FAKE_ACCESS_KEY_ID}",
               "--storage-option", f"secret={FAKE_SECRET}"]

    async def no_part_from_here(method, kwargs):
        assert method != "upload_part", "a part was sent by the command, not a worker"

    intercept(monkeypatch, f"{bucket}/out.npy", no_part_from_here)
    assert run(["scale", f"{bucket}/in.npy", f"{bucket}/out.npy", "-f", "2", "--tile", "64",
                "--quiet", "--dask", dask_cluster.scheduler_address, *options]) == 0, \
        capsys.readouterr().err
    assert objects(s3_env, bucket, "out.npy")["out.npy"] == expected
    # made of 4 parts (a multipart upload's ETag ends with its count), none sent from here
    assert s3_env.client().head_object(Bucket=name, Key="out.npy")["ETag"].endswith('-4"')


def test_signed_urls_and_passwords_stay_out_of_reports(tmp_path, capsys, photos):
    """A signed URL's signature and a URL's password appear in no report, page or line."""
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # (the server's own log would show the URL)
            pass

    handler = functools.partial(Quiet, directory=str(photos))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    secrets = ("Pa55wordInTheUrl", "S1gnatureOfTheUrl")
    url = (f"http://someone:{secrets[0]}@127.0.0.1:{server.server_address[1]}/p00.png"
           f"?X-Amz-Signature={secrets[1]}&X-Amz-Expires=60")
    try:
        assert run(["report", url, "-f", "2", "--json"]) == 0
        as_json = capsys.readouterr()
        assert run(["report", url, "-f", "2", "--html", str(tmp_path / "page.html")]) == 0
        as_table = capsys.readouterr()
        assert run(["scale", url, str(tmp_path / "big.png"), "-f", "2",
                    "--report", str(tmp_path / "report.json")]) == 0
        scaled = capsys.readouterr()
    finally:
        server.shutdown()
        server.server_close()
    assert json.loads(as_json.out)["image"].startswith("http://someone:***@127.0.0.1")
    written = [(tmp_path / name).read_text() for name in ("page.html", "report.json")]
    for text in (as_json.out, as_json.err, as_table.out, as_table.err, scaled.out,
                 scaled.err, *written):
        assert not any(secret in text for secret in secrets), text


def test_every_command_that_writes_writes_objects(tmp_path, capsys, bucket, s3_env, photos):
    """degrade, report's pictures and page, kernel matrix --out and kernel init -o take an
    object URL as they take a path: each object whole, and refused when it exists."""
    photo = str(photos / "p00.png")
    commands = [
        ["degrade", photo, f"{bucket}/low.png", "-f", "2"],
        ["report", photo, "-f", "2", "--map", f"{bucket}/map.png", "--spectrum",
         f"{bucket}/spectrum.png", "--html", f"{bucket}/page.html"],
        ["kernel", "matrix", "bilinear", "--input-size", "4x4", "--stride", "2",
         "--out", f"{bucket}/C.npy"],
        ["kernel", "init", "--in", "2", "--out", "1", "--size", "4", "--stride", "2",
         "--method", "icnr", "--seed", "0", "-o", f"{bucket}/up.npz"],
    ]
    for command in commands:
        assert run(command) == 0, (command, capsys.readouterr().err)
    capsys.readouterr()
    stored = objects(s3_env, bucket)
    assert sorted(stored) == ["C.npy", "C_T.npy", "low.png", "map.png", "page.html",
                              "spectrum.png", "up.npz"]
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(stored["low.png"])) as low, Image.open(photo) as high:
        assert low.size == (high.width // 2, high.height // 2)
    matrix = np.load(BytesIO(stored["C.npy"]))
    assert np.array_equal(np.load(BytesIO(stored["C_T.npy"])), matrix.T)
    assert "<html" in stored["page.html"].decode().lower()
    assert set(np.load(BytesIO(stored["up.npz"]))) == {"weight"}
    for command in commands:  # each output exists now: refused without -y
        assert run(command) == 1, command
        err = capsys.readouterr().err
        assert "exists" in err and len(err.strip().splitlines()) == 1, err
    assert objects(s3_env, bucket) == stored


def test_a_report_batch_gives_its_workers_the_storage_options(tmp_path, capsys, bucket, s3_env,
                                                               photos, monkeypatch):
    """--storage-option reaches a batch's worker processes (--jobs 2), whose server
    process started before the options were given: with the endpoint and credentials
    only on the command line, every object is reported."""
    from conftest import FAKE_ACCESS_KEY_ID, FAKE_SECRET

    upload(s3_env, bucket, photos, "in")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    options = ["--storage-option", f"endpoint_url={s3_env.endpoint}",
               "--storage-option", f"key={FAKE_ACCESS_KEY_ID}",
               "--storage-option", f"secret={FAKE_SECRET}"]
    for command in (["report", f"{bucket}/in", "-f", "2", "--json", "-r"],
                    ["scale", f"{bucket}/in", "-o", f"{bucket}/out", "-f", "2", "-r",
                     "--quiet"]):
        assert run([*command, "--jobs", "2", *options]) == 0, capsys.readouterr().err
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and all(json.loads(line)["checkerboard"] for line in lines)
    assert len([key for key in objects(s3_env, bucket) if key.startswith("out/")]) == 5


def test_signed_kernel_and_zarr_urls_work_and_stay_secret(tmp_path, capsys, photos):
    """A kernel file at a signed URL is read (its suffix is the path's, not the query's),
    and no message about a signed kernel or Zarr URL shows its password or signature."""
    import functools
    import http.server

    import zarr

    from upconv.kernel_files import save_kernel
    from upconv.kernels import builtin_kernel

    served = tmp_path / "served"
    served.mkdir()
    save_kernel(builtin_kernel("bilinear", 2), served / "k.npy")
    (served / "k.bin").write_bytes(b"not a kernel")
    group = zarr.open_group(str(served / "g.zarr"), mode="w")
    group.create_group("raw").create_array("0", shape=(8, 8), dtype="f4")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secrets = ("Pa55wordInTheUrl", "S1gnatureOfTheUrl")
    base = f"http://someone:{secrets[0]}@127.0.0.1:{server.server_address[1]}"
    query = f"?X-Amz-Signature={secrets[1]}"
    photo = str(photos / "p00.png")
    try:
        assert run(["scale", photo, str(tmp_path / "up.png"), "-m", "transpose", "-f", "2",
                    "--kernel", f"{base}/k.npy{query}"]) == 0, capsys.readouterr().err
        worked = capsys.readouterr()
        assert run(["scale", photo, str(tmp_path / "no.png"), "-m", "transpose", "-f", "2",
                    "--kernel", f"{base}/k.bin{query}"]) in (1, 2)
        unknown = capsys.readouterr()
        # (a store is many objects: a password, not a signature, can open it)
        assert run(["scale", f"{base}/g.zarr", str(tmp_path / "o.zarr"), "-f", "2"]) == 1
        group_error = capsys.readouterr()
    finally:
        server.shutdown()
        server.server_close()
    assert "unknown kernel file suffix '.bin'" in unknown.err, unknown.err
    assert "(arrays here: raw/0)" in group_error.err, group_error.err
    for text in (worked.err, unknown.err, group_error.err):
        assert not any(secret in text for secret in secrets), text
