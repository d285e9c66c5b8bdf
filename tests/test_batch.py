"""Batches, tiles, streaming, and Dask."""

from __future__ import annotations

import io
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import FAKE_SECRET, SAMPLES, FifoReader
from PIL import Image

import upconv
from upconv import pipeline, tiles
from upconv.cli import run
from upconv.images import load_image
from upconv.methods import Method
from upconv.pipeline import ScaleSettings, scale_file
from upconv.samples import from_float, to_float

UPCONV = [sys.executable, "-m", "upconv"]


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("camera.png", "chelsea.png", "coffee.png"):
        shutil.copy(SAMPLES / name, folder / name)
    shutil.copy(SAMPLES / "horse.png", folder / "sub" / "horse.png")
    (folder / "notes.txt").write_text("not an image, not picked from a folder")
    return folder


def test_batch_writes_what_single_runs_write(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["scale", str(photos), "-o", str(out), "-f", "2", "--recursive", "--quiet",
                "--jobs", "1"]) == 0
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert names == ["camera_x2.png", "chelsea_x2.png", "coffee_x2.png", "sub/horse_x2.png"]
    assert run(["scale", str(photos / "coffee.png"), str(tmp_path / "one.png"), "-f", "2",
                "--quiet"]) == 0
    assert (out / "coffee_x2.png").read_bytes() == (tmp_path / "one.png").read_bytes()


def test_name_template_fields(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["scale", str(photos / "camera.png"), str(photos / "coffee.png"), "-o", str(out),
                "-f", "1.5", "-m", "bilinear", "--name", "{stem}-{method}-{factor}.{ext}",
                "--format", "jpeg", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["camera-bilinear-1.5.jpg",
                                                      "coffee-bilinear-1.5.jpg"]
    assert run(["scale", str(photos), "-o", str(out), "-f", "2", "--name", "{colour}.png"]) == 2
    assert "unknown field {colour}" in capsys.readouterr().err


def test_skip_existing_resumes(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["scale", str(photos), "-o", str(out), "-f", "2", "--jobs", "1"]) == 0
    capsys.readouterr()
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "coffee_x2.png").unlink()
    assert run(["scale", str(photos), "-o", str(out), "-f", "2", "--skip-existing",
                "--jobs", "1"]) == 0
    assert "2 skipped" in capsys.readouterr().err
    assert (out / "coffee_x2.png").exists()
    assert (out / "camera_x2.png").stat().st_mtime_ns == stamp["camera_x2.png"]


def test_a_bad_file_does_not_stop_the_others(photos, tmp_path, capsys):
    (photos / "a_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    out = tmp_path / "out"
    assert run(["scale", str(photos), "-o", str(out), "-f", "2", "--jobs", "1"]) == 1
    err = capsys.readouterr().err
    assert "failed: " in err and "a_broken.png" in err and "1 failed" in err
    assert len(list(out.glob("*.png"))) == 3
    shutil.rmtree(out)
    assert run(["scale", str(photos), "-o", str(out), "-f", "2", "--jobs", "1",
                "--fail-fast"]) == 1
    assert not out.exists() or not list(out.glob("*.png"))  # stopped at the first file


def test_inputs_are_never_overwritten(photos, capsys):
    before = (photos / "camera.png").read_bytes()
    assert run(["scale", str(photos), "-o", str(photos), "-f", "2", "--name", "{name}"]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert (photos / "camera.png").read_bytes() == before


def test_batch_report_is_json_lines(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["scale", str(photos), "-o", str(out), "-f", "2", "--report", "-", "--quiet",
                "--jobs", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(os.path.basename(line["file"]) for line in lines) == [
        "camera.png", "chelsea.png", "coffee.png"]
    assert all(line["factor"] == 2 and line["checkerboard"]["verdict"] == "none"
               for line in lines)


def test_jobs_are_byte_identical(photos, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert run(["scale", str(photos), "-o", str(one), "-f", "2", "-r", "--jobs", "1"]) == 0
    assert run(["scale", str(photos), "-o", str(two), "-f", "2", "-r", "--jobs", "2"]) == 0
    for path in one.rglob("*.png"):
        assert path.read_bytes() == (two / path.relative_to(one)).read_bytes()


def test_interrupted_batch_leaves_whole_files_and_resumes(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(40):
        shutil.copy(SAMPLES / "astronaut.png", folder / f"a{index:02d}.png")
    out = tmp_path / "out"
    command = UPCONV + ["scale", str(folder), "-o", str(out), "-f", "3", "--jobs", "2"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and list(out.glob("*.png"))):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err  # stopped part-way: 40 big images take a while
    assert b"Traceback" not in err
    assert 0 < len(list(out.glob("*.png"))) < 40
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    for path in out.glob("*.png"):  # whatever is there is whole
        with Image.open(path) as image:
            image.load()
    assert subprocess.run(command + ["--skip-existing", "--quiet"]).returncode == 0
    assert len(list(out.glob("*.png"))) == 40


def test_progress_bar_only_on_a_terminal(photos, tmp_path):
    piped = subprocess.run(UPCONV + ["scale", str(photos), "-o", str(tmp_path / "a"), "-f", "2"],
                           capture_output=True, text=True, check=False)
    assert "files/s" not in piped.stderr and "\r" not in piped.stderr
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(UPCONV + ["scale", str(photos), "-o", str(tmp_path / "b"), "-f",
                                        "2", "--jobs", "1"], stderr=follower,
                              stdout=subprocess.DEVNULL, check=False)
        os.set_blocking(leader, False)
        shown = b""
        try:
            while chunk := os.read(leader, 65536):
                shown += chunk
        except (BlockingIOError, OSError):
            pass
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 0
    assert b"files/s" in shown or b"3/3" in shown


# ------------------------------------------------------------------ tiles

@pytest.mark.parametrize("method,kernel,post", [
    ("nearest", None, None), ("bilinear", None, None), ("bicubic", None, None),
    ("transpose", "bicubic", None), ("transpose", None, None),
    ("transpose", "bilinear", "binomial3")])
@pytest.mark.parametrize("boundary", ["edge", "reflect", "zero"])
def test_tiles_equal_the_untiled_result(tmp_path, rng, method, kernel, post, boundary):
    values = rng.random((41, 27, 3))
    np.save(tmp_path / "in.npy", values)
    base = ScaleSettings(method=Method(method), factor=(2.0, 2.0), kernel_spec=kernel,
                         post_kernel=post, boundary=boundary, summary_line=False)
    scale_file(str(tmp_path / "in.npy"), str(tmp_path / "whole.npy"), base)
    from dataclasses import replace
    scale_file(str(tmp_path / "in.npy"), str(tmp_path / "tiled.npy"), replace(base, tile=6))
    whole, tiled = np.load(tmp_path / "whole.npy"), np.load(tmp_path / "tiled.npy")
    tolerance = 1e-6 if method == "bicubic" else 0.0
    np.testing.assert_allclose(tiled, whole, atol=tolerance, rtol=0)


@pytest.mark.parametrize("method", ["bilinear", "lanczos", "nearest", "transpose"])
def test_tiled_image_files_equal_untiled(tmp_path, capsys, method):
    """Finite supports: any banding gives the same pixels as the whole image, exactly."""
    photo = load_image(str(SAMPLES / "coffee.png")).samples
    whole = upconv.scale(to_float(photo), 3, method=method) if method != "nearest" else (
        upconv.scale(photo, 3, method="nearest"))
    expected = from_float(whole, np.uint8) if method != "nearest" else whole
    for tile in ("90", "3", None):
        out = tmp_path / f"{tile}.png"
        assert run(["scale", str(SAMPLES / "coffee.png"), str(out), "-f", "3", "-m", method,
                    "--quiet", *(["--tile", tile] if tile else [])]) == 0
        np.testing.assert_array_equal(load_image(str(out)).samples, expected)


def test_tiled_bicubic_equals_untiled_to_float32_round_off(tmp_path, capsys):
    """The spline prefilter's recursion restarts in each band's halo (its start-up error
    decays below 1e-11 across it), so a band can differ from the whole image by float32
    round-off (~1e-7): a rounding to 8 bits then flips, very rarely, by one level."""
    photo = load_image(str(SAMPLES / "coffee.png")).samples
    whole = upconv.scale(to_float(photo), 3, method="bicubic")
    for tile in ("90", None):  # None: banded automatically (over 2 megapixels)
        floats = tmp_path / f"{tile}.npy"
        assert run(["scale", str(SAMPLES / "coffee.png"), str(floats), "-f", "3", "--quiet",
                    *(["--tile", tile] if tile else [])]) == 0
        np.testing.assert_allclose(np.load(floats), whole, rtol=0, atol=4e-7)
        out = tmp_path / f"{tile}.png"
        assert run(["scale", str(SAMPLES / "coffee.png"), str(out), "-f", "3", "--quiet",
                    *(["--tile", tile] if tile else [])]) == 0
        difference = np.abs(load_image(str(out)).samples.astype(int)
                            - from_float(whole.copy(), np.uint8).astype(int))
        assert difference.max() <= 1 and np.count_nonzero(difference) <= 1e-5 * whole.size


def test_big_outputs_tile_and_stream_automatically(tmp_path, rng, monkeypatch):
    values = rng.random((50, 40)).astype(np.float32)
    np.save(tmp_path / "in.npy", values)
    monkeypatch.setattr(tiles, "AUTO_TILE_PIXELS", 1000)
    streamed = []
    real = pipeline._stream_npy
    monkeypatch.setattr(pipeline, "_stream_npy", lambda *a: streamed.append(1) or real(*a))
    result = scale_file(str(tmp_path / "in.npy"), str(tmp_path / "out.npy"),
                        ScaleSettings(method=Method.BILINEAR, factor=(2.0, 2.0)))
    assert streamed and "middle tile" in result.checkerboard
    out = np.load(tmp_path / "out.npy")
    assert out.dtype == np.float32 and out.shape == (100, 80)
    np.testing.assert_array_equal(out, upconv.scale(values, 2, method="bilinear"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "out.npy"]


@pytest.mark.parametrize("kernel_shape,stride,padding,output_padding", [
    ((4, 4), 2, 1, 0), ((3, 3), 2, 1, 1), ((5, 3), 3, 2, 2), ((3, 5, 5), 2, 0, 1),
    ((3, 3, 4, 4), 2, 1, 0),
])
@pytest.mark.parametrize("tile", ["1", "5", "1000"])
def test_banded_transposes_in_pytorch_geometry_equal_zero_insertion(
        tmp_path, capsys, rng, kernel_shape, stride, padding, output_padding, tile):
    """PyTorch's geometry (padding crops, output_padding adds) is banded like any method:
    every band from the input rows it reaches, equal to the textbook route (insert zeros,
    convolve, crop) on the whole image. Float64 throughout."""
    from upconv.transpose import zero_insertion_transpose

    image = rng.random((13, 11, 3))
    weights = rng.normal(size=kernel_shape)
    np.save(tmp_path / "in.npy", image)
    np.save(tmp_path / "k.npy", weights)
    out = tmp_path / "out.npy"
    assert run(["scale", str(tmp_path / "in.npy"), str(out), "-m", "transpose", "-f",
                str(stride), "--kernel", str(tmp_path / "k.npy"), "--padding", str(padding),
                "--output-padding", str(output_padding), "--tile", tile, "--quiet"]) == 0, (
        capsys.readouterr().err)
    banded = np.load(out)
    if weights.ndim == 2:
        expected = np.stack([zero_insertion_transpose(image[..., c], weights, stride,
                                                      padding, output_padding)
                             for c in range(3)], axis=-1)
    elif weights.ndim == 3:
        expected = np.stack([zero_insertion_transpose(image[..., c], weights[c], stride,
                                                      padding, output_padding)
                             for c in range(3)], axis=-1)
    else:  # C_in x C_out: each output channel sums its input channels' results
        expected = np.stack([sum(zero_insertion_transpose(image[..., ci], weights[ci, co],
                                                          stride, padding, output_padding)
                                 for ci in range(3)) for co in range(weights.shape[1])],
                            axis=-1)
    assert banded.shape == expected.shape
    np.testing.assert_allclose(banded, expected, rtol=0, atol=1e-12)


def test_banded_transpose_with_post_kernel_and_alpha_equals_whole(tmp_path, capsys):
    """A post-kernel sees a few more rows around each band; alpha is premultiplied per
    window: the PyTorch-geometry image file equals the whole image's rounding."""
    photo = load_image(str(SAMPLES / "soft_alpha.png")).samples
    kernel = upconv.Kernel(np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 16.0, stride=2)
    np.save(tmp_path / "k.npy", kernel.weights)
    whole = upconv.scale(to_float(photo), 2, method="transpose", kernel=kernel, padding=1,
                         post_kernel="binomial3", alpha=True)
    for tile in ("7", "64"):
        out = tmp_path / f"{tile}.png"
        assert run(["scale", str(SAMPLES / "soft_alpha.png"), str(out), "-m", "transpose",
                    "--kernel", str(tmp_path / "k.npy"), "-f", "2", "--padding", "1",
                    "--post-kernel", "binomial3", "--tile", tile, "--quiet"]) == 0
        np.testing.assert_array_equal(load_image(str(out)).samples,
                                      from_float(whole.copy(), photo.dtype))


@pytest.mark.parametrize("method,factor,options,atol", [
    ("bilinear", "1.5", [], 0),
    ("lanczos", "2.5x1.7", ["--boundary", "reflect"], 0),
    ("bilinear", "0.6", ["--boundary", "zero"], 0),
    ("bicubic", "1.5", [], 4e-7),
    ("bicubic", "2.3x1.4", ["--boundary", "reflect"], 4e-7),
    ("bicubic", "1.7", ["--boundary", "zero", "--linear-light"], 4e-7),
])
def test_any_factor_bands_equal_the_whole_image(tmp_path, capsys, method, factor, options,
                                                 atol):
    """Factors that are not whole numbers are computed band by band too (never a whole float
    copy): the bands give the whole image's values, exactly for finite supports."""
    from upconv.options import Boundary

    source = SAMPLES / ("soft_alpha.png" if "--linear-light" in options else "coffee.png")
    photo = to_float(load_image(str(source)).samples)
    fy, fx = ((float(factor), float(factor)) if "x" not in factor else
              (float(factor.split("x")[1]), float(factor.split("x")[0])))
    boundary = options[options.index("--boundary") + 1] if "--boundary" in options else "edge"
    whole = upconv.scale(photo, (fy, fx), method=method, boundary=Boundary(boundary),
                         alpha=photo.shape[2] in (2, 4),
                         linear_light="--linear-light" in options)
    out = tmp_path / "banded.npy"
    assert run(["scale", str(source), str(out), "-f", factor, "-m", method, "--tile", "37",
                "--quiet", *options]) == 0
    banded = np.load(out)
    assert banded.shape == whole.shape
    np.testing.assert_allclose(banded, whole, rtol=0, atol=atol)


@pytest.mark.parametrize("options", [
    ["-f", "1.5", "-m", "bilinear"], ["-f", "2.5x1.7", "-m", "lanczos"],
    ["-f", "2", "-m", "transpose", "--padding", "1", "--output-padding", "1"],
    ["-f", "3", "-m", "nearest"],
])
def test_streamed_npy_at_any_factor_and_geometry_equals_in_memory(tmp_path, capsys, rng,
                                                                  monkeypatch, options):
    """.npy to .npy streams band by band (neither array whole) for every plan: the file's
    bytes equal those of the same job run in memory."""
    np.save(tmp_path / "in.npy", rng.random((45, 31, 3)))
    streamed, whole = tmp_path / "streamed.npy", tmp_path / "whole.npy"
    calls = []
    real = pipeline._stream_npy

    def spy(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_stream_npy", spy)
    assert run(["scale", str(tmp_path / "in.npy"), str(streamed), "--tile", "7",
                "--quiet", *options]) == 0, capsys.readouterr().err
    assert run(["scale", str(tmp_path / "in.npy"), str(whole), "--quiet", *options]) == 0
    assert calls == [str(streamed)]
    assert streamed.read_bytes() == whole.read_bytes()


def test_report_several_images(photos, tmp_path, capsys):
    assert run(["report", str(photos), "--json", "--quiet"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and all("file" in line for line in lines)
    bad = upconv.scale(np.asarray(Image.open(SAMPLES / "camera.png")) / 255.0, 2,
                       method="transpose", kernel=upconv.Kernel(np.ones((3, 3)), stride=2))
    Image.fromarray((np.clip(bad, 0, 1) * 255).astype(np.uint8)).save(photos / "bad.png")
    assert run(["report", str(photos), "--fail-above", "1", "--quiet"]) == 3


# ------------------------------------------------------------------ Dask

@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    # The dashboard on any free port: its default, 8787, may be taken on a shared machine.
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=":0") as local:
        yield local


def test_dask_batch_equals_local(cluster, photos, tmp_path, capsys):
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert run(["scale", str(photos), "-o", str(local), "-f", "2", "-r", "--jobs", "1"]) == 0
    assert run(["scale", str(photos), "-o", str(remote), "-f", "2", "-r", "--dask",
                cluster.scheduler_address]) == 0
    for path in local.rglob("*.png"):
        assert path.read_bytes() == (remote / path.relative_to(local)).read_bytes()


def test_dask_workers_read_and_write_objects_themselves(cluster, photos, tmp_path, capsys,
                                                        bucket, s3_env):
    """No shared file system: the inputs and outputs are objects, which the workers (whose
    environment knows nothing of the local S3 server) reach with the options given."""
    from conftest import FAKE_ACCESS_KEY_ID

    local = tmp_path / "local"
    assert run(["scale", str(photos), "-o", str(local), "-f", "2", "-r", "--jobs", "1"]) == 0
    client = s3_env.client()
    name = bucket.removeprefix("s3://")
    for path in photos.rglob("*.png"):
        client.put_object(Bucket=name, Key=f"in/{path.relative_to(photos).as_posix()}",
                          Body=path.read_bytes())
    options = ["--storage-option", f"endpoint_url={s3_env.endpoint}",
               "--storage-option", f"key={FAKE_ACCESS_KEY_ID}",
               "--storage-option", f"secret={FAKE_SECRET}"]
    assert run(["scale", f"{bucket}/in", "-o", f"{bucket}/out", "-f", "2", "-r", "--dask",
                cluster.scheduler_address, *options]) == 0, capsys.readouterr().err
    for path in local.rglob("*.png"):
        key = f"out/{path.relative_to(local).as_posix()}"
        assert client.get_object(Bucket=name, Key=key)["Body"].read() == path.read_bytes()


def test_workers_without_credentials_say_they_are_workers(cluster, photos, capsys, bucket,
                                                          s3_env):
    """Credentials known only where the command runs do not reach the workers: the error
    says that it was a worker that found none, and how to give them. Nor do those an
    earlier job gave with --storage-option: each job's tasks carry their own."""
    from conftest import FAKE_ACCESS_KEY_ID

    client = s3_env.client()
    name = bucket.removeprefix("s3://")
    photo = next(photos.rglob("*.png"))
    client.put_object(Bucket=name, Key="in/a.png", Body=photo.read_bytes())
    from distributed import Client

    from upconv.storage import use_storage_options

    # what an earlier job's tasks left in every worker process
    with Client(cluster.scheduler_address) as dask:
        dask.run(use_storage_options, {"endpoint_url": s3_env.endpoint,
                                       "key": FAKE_ACCESS_KEY_ID, "secret": FAKE_SECRET})
    assert run(["scale", f"{bucket}/in", "-o", f"{bucket}/out", "-f", "2", "--dask",
                cluster.scheduler_address, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no credentials found on a Dask worker" in err and "--storage-option" in err, err
    assert "Traceback" not in err and FAKE_SECRET not in err


def test_dask_reports_a_failing_file(cluster, photos, tmp_path, capsys):
    (photos / "broken.png").write_bytes(b"not a png")
    assert run(["scale", str(photos), "-o", str(tmp_path / "out"), "-f", "2", "--dask",
                cluster.scheduler_address]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 failed" in err
    assert len(list((tmp_path / "out").glob("*.png"))) == 3


def test_dask_survives_a_killed_worker(cluster, tmp_path):
    from distributed import Client

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(16):
        shutil.copy(SAMPLES / "coffee.png", folder / f"c{index:02d}.png")
    out = tmp_path / "out"
    status = []
    batch = threading.Thread(target=lambda: status.append(run(
        ["scale", str(folder), "-o", str(out), "-f", "3", "--quiet", "--dask",
         cluster.scheduler_address])))
    batch.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and list(out.glob("*.png"))):
        time.sleep(0.02)
    with Client(cluster.scheduler_address) as client:
        pids = client.run(os.getpid)
        os.kill(next(iter(pids.values())), signal.SIGKILL)  # a worker dies mid-batch
    batch.join(timeout=180)
    assert status == [0]
    expected = tmp_path / "expected.png"
    assert run(["scale", str(folder / "c00.png"), str(expected), "-f", "3", "--quiet"]) == 0
    outputs = sorted(out.glob("*.png"))
    assert len(outputs) == 16 and not list(out.glob(".*.part"))
    assert all(path.read_bytes() == expected.read_bytes() for path in outputs)


def _held_task(name: str) -> int:
    """A task that runs until the Dask event ``name`` is set, having set ``name-started``."""
    from distributed import Event

    Event(f"{name}-started").set()
    Event(name).wait(DASK_DEADLINE)
    return 1


#: How long a test waits for a Dask event on a loaded machine.
DASK_DEADLINE = 120


def _stopping_a_held_task(cluster, monkeypatch, on_told):
    """``stop_tasks`` on a task that runs until released; ``on_told(name)`` is called (in
    another thread) once stop_tasks says what it waits for. Returns what stop_tasks
    returned and the lines it said."""
    import uuid

    from distributed import Client, Event

    from upconv import cluster as cluster_module

    name = f"held-{uuid.uuid4().hex}"
    said: list[str] = []

    def tell(text: str) -> None:
        said.append(text)
        threading.Thread(target=on_told, args=(name,)).start()

    monkeypatch.setattr(cluster_module, "tell", tell)
    with Client(cluster.scheduler_address) as client:
        future = client.submit(_held_task, name, pure=False)
        try:
            assert Event(f"{name}-started", client=client).wait(DASK_DEADLINE)
            stopped = cluster_module.stop_tasks(client, [future], wait=DASK_DEADLINE * 5)
        finally:
            Event(name, client=client).set()
    return stopped, said


def test_a_failed_cluster_job_says_it_waits_for_its_running_tasks(cluster, monkeypatch):
    """The job's caller gets control back once the running task has ended, and says what it
    waits for, and how to stop waiting, while it waits."""
    from distributed import Event

    stopped, said = _stopping_a_held_task(
        cluster, monkeypatch, lambda name: Event(name).set())
    assert stopped is True
    assert said == ["waiting for 1 task(s) still running on the cluster to end "
                    f"(at most {DASK_DEADLINE * 5} s; interrupt to stop waiting)"]


def test_a_second_ctrl_c_ends_the_wait_for_running_cluster_tasks(cluster, monkeypatch):
    """After the first Ctrl-C (the one that stopped the job), another ends the wait for
    tasks still running: a warning says that they are."""
    from upconv import stopping

    with stopping.handling_signals() as record:
        record.first, record.count = signal.SIGINT, 1  # the first, already raised
        with pytest.warns(UserWarning, match="1 task.s. still running on the cluster when "
                                             "interrupted"):
            stopped, said = _stopping_a_held_task(
                cluster, monkeypatch, lambda name: os.kill(os.getpid(), signal.SIGINT))
        assert record.count == 2
    assert stopped is False
    assert said and said[0].endswith(
        f"(at most {DASK_DEADLINE * 5} s; interrupt again to stop waiting)")


def test_a_ctrl_c_after_a_failure_ends_the_wait_without_hiding_the_failure(cluster,
                                                                           monkeypatch):
    """A job that failed (no signal yet) waits for its running task; a Ctrl-C then ends the
    wait and raises nothing there, so that the job's own error is what is reported (the
    signal still sets the exit status)."""
    from upconv import stopping

    with stopping.handling_signals() as record:
        record.arm()  # (a command's run: the first signal would raise)
        with pytest.warns(UserWarning, match="1 task.s. still running on the cluster when "
                                             "interrupted"):
            stopped, said = _stopping_a_held_task(
                cluster, monkeypatch, lambda name: os.kill(os.getpid(), signal.SIGINT))
        assert record.count == 1 and record.first == signal.SIGINT
        assert not record.raising  # (raised for nothing: the status is 130 all the same)
    assert stopped is False
    assert said and said[0].endswith(
        f"(at most {DASK_DEADLINE * 5} s; interrupt to stop waiting)")


def test_two_signals_before_the_wait_end_it_at_once(cluster):
    """A second Ctrl-C that came while the job unwound, before its tasks were waited for,
    ends that wait before it starts."""
    import uuid

    from distributed import Client, Event

    from upconv import stopping
    from upconv.cluster import stop_tasks

    name = f"held-{uuid.uuid4().hex}"
    with Client(cluster.scheduler_address) as client:
        future = client.submit(_held_task, name, pure=False)
        try:
            assert Event(f"{name}-started", client=client).wait(DASK_DEADLINE)
            with stopping.handling_signals() as record:
                record.first, record.count = signal.SIGINT, 2
                with pytest.warns(UserWarning, match="tasks may still be running on the "
                                                     "cluster when interrupted"):
                    assert stop_tasks(client, [future], wait=DASK_DEADLINE * 5) is False
        finally:
            Event(name, client=client).set()


def test_signals_counted_raises_nothing_and_arms_again_if_none_came():
    from upconv import stopping

    with stopping.handling_signals() as record:
        record.arm()
        with stopping.signals_counted():
            assert not record.raising
        assert record.raising  # (no signal came: the next one raises)
        with stopping.signals_counted():
            os.kill(os.getpid(), signal.SIGINT)
        assert record.count == 1 and not record.raising


def test_tell_speaks_only_in_a_command(capfd):
    from upconv import stopping

    stopping.tell("not said")
    with stopping.handling_signals():
        stopping.tell("said")
    assert capfd.readouterr().err == "upconv: said\n"


def test_dask_streams_the_tiles_of_a_big_npy(cluster, tmp_path, rng, capsys):
    values = rng.random((90, 70)).astype(np.float32)
    np.save(tmp_path / "in.npy", values)
    assert run(["scale", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"), "-f", "2",
                "-m", "bilinear", "--tile", "16", "--dask", cluster.scheduler_address]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"),
                                  upconv.scale(values, 2, method="bilinear"))


def test_dask_streams_a_big_npy_into_a_pipe_in_order(cluster, tmp_path, rng):
    """A FIFO takes the bands one after another, in order, whichever worker finishes first."""
    values = rng.random((90, 70)).astype(np.float32)
    np.save(tmp_path / "in.npy", values)
    expected = io.BytesIO()
    np.save(expected, upconv.scale(values, 2, method="bilinear"))
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    status = run(["scale", str(tmp_path / "in.npy"), str(fifo), "-f", "2", "-m", "bilinear",
                  "--tile", "16", "--quiet", "--dask", cluster.scheduler_address])
    assert reader.result() == expected.getvalue()
    assert status == 0


# ------------------------------------------------------------------ review fixes

def test_resume_with_the_output_folder_inside_the_input_folder(photos, capsys):
    out = photos / "big"
    assert run(["scale", str(photos), "-o", str(out), "-f", "2", "-r", "--jobs", "1",
                "--report", str(photos / "r.jsonl")]) == 0
    (out / "camera_x2.png").unlink()
    capsys.readouterr()
    assert run(["scale", str(photos), "-o", str(out), "-f", "2", "-r", "--jobs", "1",
                "--skip-existing", "--report", str(photos / "r.jsonl")]) == 0
    assert "3 skipped" in capsys.readouterr().err  # its own outputs are not inputs
    assert not list(out.rglob("*_x2_x2.png"))
    lines = (photos / "r.jsonl").read_text().splitlines()
    assert len(lines) == 5  # 4 from the first run, 1 appended by the resumed one


@pytest.mark.parametrize("template", ["{}", "{stem:d}", "../{name}", "/tmp/{name}"])
def test_bad_name_templates_are_usage_errors(photos, tmp_path, capsys, template):
    assert run(["scale", str(photos), "-o", str(tmp_path / "o"), "-f", "2", "--name",
                template]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_output_folder_that_is_a_file(photos, capsys):
    assert run(["scale", str(photos), "-o", str(photos / "camera.png"), "-f", "2"]) == 1
    err = capsys.readouterr().err
    assert "not a folder" in err and len(err.strip().splitlines()) == 1


def test_dask_with_relative_paths(cluster, photos, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the workers' working folder is elsewhere
    assert run(["scale", "in", "-o", "out", "-f", "2", "--dask",
                cluster.scheduler_address]) == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 3
    np.save(tmp_path / "small.npy", np.zeros((40, 30), np.float32))
    assert run(["scale", "small.npy", "up.npy", "-f", "2", "--tile", "8", "--dask",
                cluster.scheduler_address]) == 0
    assert np.load(tmp_path / "up.npy").shape == (80, 60)


def test_batch_report_lines_carry_the_input_order(photos, tmp_path, capsys):
    """Lines come as images finish; each carries its input's place in the batch."""
    expected = sorted(str(p) for p in photos.iterdir() if p.suffix == ".png")
    assert run(["scale", str(photos), "-o", str(tmp_path / "out"), "-f", "2", "--quiet",
                "--report", "-", "--jobs", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(line["index"] for line in lines) == list(range(len(expected)))
    assert [line["file"] for line in sorted(lines, key=lambda x: x["index"])] == expected
    assert run(["report", str(photos), "--json", "--quiet", "--jobs", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in sorted(lines, key=lambda x: x["index"])] == expected


@pytest.mark.parametrize("method,options", [
    ("bilinear", []), ("bicubic", []), ("bicubic", ["--boundary", "zero"]),
    ("lanczos", ["--boundary", "reflect"]), ("bicubic", ["-f", "3"]),
    ("bilinear", ["-f", "1.5"]), ("bicubic", ["--linear-light"]),
])
@pytest.mark.parametrize("mode", ["RGB", "I;16"])
def test_bands_rounded_as_computed_equal_the_rounded_float_bands(tmp_path, capsys, method,
                                                                 options, mode):
    """Image outputs are rounded to their samples a few rows at a time inside the engine,
    never held as float bands: the samples are exactly from_float of the float values the
    same banded job writes to .npy, and (for finite supports, at whole factors) of the
    whole image's values."""
    with Image.open(SAMPLES / "coffee.png") as image:
        source = tmp_path / "in.png"
        (image.convert(mode) if mode != "I;16" else Image.fromarray(
            np.asarray(image.convert("L"), np.uint16) * 257)).save(source)
    options = options if "-f" in options else [*options, "-f", "2"]
    common = ["-m", method, "--tile", "37", "--quiet", *options]
    assert run(["scale", str(source), str(tmp_path / "out.png"), *common]) == 0
    assert run(["scale", str(source), str(tmp_path / "out.npy"), *common]) == 0
    samples = load_image(str(tmp_path / "out.png")).samples
    floats = np.load(tmp_path / "out.npy").reshape(samples.shape)
    np.testing.assert_array_equal(samples, from_float(floats, samples.dtype))
    if method != "bicubic" and "1.5" not in options and "--boundary" not in options:
        stored = load_image(str(source)).samples
        whole = upconv.scale(to_float(stored), 2, method=method)
        np.testing.assert_array_equal(samples, from_float(whole, stored.dtype).reshape(
            samples.shape))


@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_banded_bicubic_with_alpha_or_gray_equals_whole(tmp_path, capsys, mode):
    """Alpha windows take the other prefilter route (premultiplied first); gray has C = 1."""
    with Image.open(SAMPLES / "soft_alpha.png" if mode == "RGBA" else
                    SAMPLES / "camera.png") as image:
        source = tmp_path / "in.png"
        image.convert(mode).save(source)
    photo = load_image(str(source)).samples
    whole = upconv.scale(to_float(photo), 3, method="bicubic", alpha=mode == "RGBA")
    floats = tmp_path / "banded.npy"
    assert run(["scale", str(source), str(floats), "-f", "3", "--tile", "30", "--quiet"]) == 0
    banded = np.load(floats)
    np.testing.assert_allclose(banded.reshape(whole.shape), whole, rtol=0, atol=4e-7)
