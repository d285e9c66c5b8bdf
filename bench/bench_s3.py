"""Benchmark a batch in a bucket against the same batch on the local disk.

Starts moto's S3-compatible server (``moto[server]``) on loopback in this
process, makes 200 different 512x512 RGB PNGs (as ``bench_batch.py`` does),
uploads them to a bucket, then runs, interleaved, median of ``--repeat`` wall
times (``time.perf_counter``), each as a separate ``upconv`` process with two
worker processes:

- ``upconv scale IN -o OUT -f 2 -y --quiet`` on local folders;
- ``upconv scale s3://bench/in -o s3://bench/out -f 2 -y --quiet``.

It checks that the objects written equal the local files byte for byte, and
prints the throughput (files per second) of both and their ratio. Target: the
bucket's throughput within 25 % of the local disk's.

The server runs on the same 2 CPUs as the batch, so its own work (a Python web
server parsing every request) is in the figure, which a real S3 service's is not.
``--server`` chooses how moto is served:

- ``waitress`` (the default): moto's S3 application alone (``create_backend_app("s3")``)
  served by waitress, a WSGI server that keeps HTTP/1.1 connections alive between
  requests, as S3 does, and here keeps request bodies in memory rather than spooling
  those over 512 KiB to a temporary file;
- ``werkzeug``: the same application on werkzeug's threaded server, which closes the
  connection after every answer (it says ``Connection: close`` even to HTTP/1.1
  requests), so each request opens a new connection on a new server thread;
- ``all``: moto's ``ThreadedMotoServer``, which serves every AWS service: it finds
  the service of each request by scanning the folders of moto's ~200 services
  (a few hundred ``stat`` calls per request), on werkzeug too.

    python bench/bench_s3.py [--repeat 3] [--files 200] [--server waitress|werkzeug|all]

With ``--npy SIZE`` it measures a big ``.npy`` instead: a SIZE x SIZE RGB float32 array
doubled (bicubic), streamed in tiles, ``upconv scale IN.npy OUT.npy -f 2`` on the local
disk against ``upconv scale s3://bench/in.npy s3://bench/out.npy -f 2`` (read in ranges,
written as a multipart upload), interleaved, median of ``--repeat``: each command's wall
time and its peak resident memory (GNU time's, ``/usr/bin/time``), and the output
object checked against the local file (SHA-256)::

    python bench/bench_s3.py --npy 8000 [--repeat 3]

Needs ``pip install 'upconv[cloud]' 'moto[server]' waitress``; skipped cleanly without
moto, and served by werkzeug (with a note) without waitress.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import make_inputs, wall  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--npy", type=int, metavar="SIZE", default=None,
                        help="measure one big SIZE x SIZE RGB float32 .npy (streamed) "
                             "instead of a batch of PNGs")
    parser.add_argument("--server", choices=["waitress", "werkzeug", "all"],
                        default="waitress",
                        help="moto's S3 application on waitress (kept-alive connections) or "
                             "on werkzeug (a connection per request), or moto's server of "
                             "every service (all)")
    args = parser.parse_args()
    started = start_moto(args.server)
    if started is None:
        return 0
    server, endpoint, client, args.server = started
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    upconv = [sys.executable, "-m", "upconv", "scale"]
    if args.npy is not None:
        if not os.path.exists("/usr/bin/time"):
            print("skipped: --npy needs GNU time (/usr/bin/time) to measure memory")
            server.stop()
            return 0
        try:
            return big_npy(client, env, upconv, args.npy, args.repeat, args.server)
        finally:
            server.stop()
    try:
        with tempfile.TemporaryDirectory() as folder:
            base = Path(folder)
            (base / "in").mkdir()
            make_inputs(base / "in", args.files)
            for path in sorted((base / "in").glob("*.png")):
                client.put_object(Bucket="bench", Key=f"in/{path.name}",
                                  Body=path.read_bytes())
            local_cmd = upconv + [str(base / "in"), "-o", str(base / "out"), "-f", "2", "-y",
                                  "--quiet", "--jobs", "2"]
            bucket_cmd = upconv + ["s3://bench/in", "-o", "s3://bench/out", "-f", "2", "-y",
                                   "--quiet", "--jobs", "2"]
            wall(local_cmd, env)  # warm-up, each
            wall(bucket_cmd, env)
            local, bucket, served = [], [], []
            for _ in range(args.repeat):
                local.append(wall(local_cmd, env))
                before = time.process_time()  # this process: the server, nothing else
                bucket.append(wall(bucket_cmd, env))
                served.append(time.process_time() - before)
            for path in sorted((base / "out").glob("*.png")):
                body = client.get_object(Bucket="bench", Key=f"out/{path.name}")["Body"]
                if body.read() != path.read_bytes():
                    print(f"MISMATCH: out/{path.name}")
                    return 1
    finally:
        server.stop()
    local_time, bucket_time = statistics.median(local), statistics.median(bucket)
    print(f"batch of {args.files} 512x512 PNGs, x2 bicubic, --jobs 2; median of "
          f"{args.repeat} interleaved runs (time.perf_counter, whole processes); server: "
          + SERVERS[args.server])
    print(f"  local disk -> local disk: {local_time:.2f} s, "
          f"{args.files / local_time:.1f} files/s")
    print(f"  bucket -> bucket:         {bucket_time:.2f} s, "
          f"{args.files / bucket_time:.1f} files/s")
    print(f"  the server's own CPU time per bucket batch: {statistics.median(served):.2f} s "
          "(on the same CPUs as the batch)")
    ratio = local_time / bucket_time
    print(f"  bucket throughput / local throughput: {ratio:.2f} "
          f"(target >= 0.75: {'met' if ratio >= 0.75 else 'MISSED'}); outputs identical")
    return 0


def big_npy(client, env: dict[str, str], upconv: list[str], size: int, repeat: int,
            server: str) -> int:
    """The ``--npy`` benchmark: one big array, streamed, on the disk and in the bucket."""
    import hashlib

    import numpy as np

    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as folder:
        base = Path(folder)
        source = np.lib.format.open_memmap(base / "in.npy", mode="w+", dtype=np.float32,
                                           shape=(size, size, 3))
        rng = np.random.default_rng(0)
        for first in range(0, size, 1024):
            source[first:first + 1024] = rng.random(source[first:first + 1024].shape,
                                                    dtype=np.float32)
        source.flush()
        del source
        with open(base / "in.npy", "rb") as handle:
            client.upload_fileobj(handle, "bench", "in.npy")
        local_cmd = upconv + [str(base / "in.npy"), str(base / "out.npy"), "-f", "2", "-y",
                              "--quiet"]
        # moto answers the completion of a multipart upload only once it has put the whole
        # object together (seconds for gigabytes), where S3 answers at once and keeps the
        # connection busy: without a longer read timeout than upconv's 20 s, the client
        # gives up, asks again, and moto fails the second request.
        bucket_cmd = upconv + ["s3://bench/in.npy", "s3://bench/out.npy", "-f", "2", "-y",
                               "--quiet", "--storage-option", "config_kwargs.read_timeout=600"]
        figures: dict[str, list[tuple[float, float, float]]] = {"local": [], "bucket": []}
        served = []
        for _ in range(repeat):
            figures["local"].append(timed(local_cmd, env))
            before = time.process_time()  # this process: the server, nothing else
            figures["bucket"].append(timed(bucket_cmd, env))
            served.append(time.process_time() - before)
        digest = hashlib.sha256()
        body = client.get_object(Bucket="bench", Key="out.npy")["Body"]
        for piece in iter(lambda: body.read(64 << 20), b""):
            digest.update(piece)
        local_digest = hashlib.sha256()
        with open(base / "out.npy", "rb") as handle:
            for piece in iter(lambda: handle.read(64 << 20), b""):
                local_digest.update(piece)
        if digest.digest() != local_digest.digest():
            print("MISMATCH: s3://bench/out.npy differs from the local output")
            return 1
        out_bytes = (base / "out.npy").stat().st_size
    print(f"{size}x{size} RGB float32 .npy ({size * size * 12 / 1e9:.2f} GB) doubled, bicubic, "
          f"streamed ({out_bytes / 1e9:.2f} GB out); median of {repeat} interleaved runs "
          f"(whole processes); server: {SERVERS[server]}")
    for label, name in (("local", "local disk -> local disk"), ("bucket", "bucket -> bucket")):
        times = [t for t, _, _ in figures[label]]
        peaks = [m for _, m, _ in figures[label]]
        print(f"  {name + ':':26s} {statistics.median(times):6.2f} s "
              f"({', '.join(f'{t:.2f}' for t in times)}), peak memory "
              f"{statistics.median(peaks):.0f} MB ({', '.join(f'{m:.0f}' for m in peaks)}), "
              f"CPU {statistics.median(c for _, _, c in figures[label]):.1f} s")
    print(f"  the server's own CPU time per bucket run: {statistics.median(served):.1f} s "
          "(on the same CPUs)")
    print("  outputs identical (SHA-256)")
    return 0


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall time (s), peak resident memory (MB) and CPU time (s, user and system) of one
    whole command, which must succeed. Memory and CPU are measured by GNU time
    (``/usr/bin/time -f "%M %U %S"``), which starts
    the command itself: a process forked from this one (holding the server's objects)
    would report this process's peak as its own (``ru_maxrss`` keeps the peak of the
    memory a process had before its ``exec``)."""
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", report.name,
                               *command],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: "
                               f"{done.stderr.decode(errors='replace')}")
        peak, user, system = report.read().split()[-3:]
        return elapsed, int(peak) / 1024, float(user) + float(system)


SERVERS = {
    "waitress": "moto's S3 app on waitress, connections kept alive",
    "werkzeug": "moto's S3 app on werkzeug, a connection per request",
    "all": "moto's ThreadedMotoServer (every service), a connection per request",
}


class _Server:
    """A werkzeug server on a thread, stopped with :meth:`stop`."""

    def __init__(self, server) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


def start_moto(kind: str = "waitress"):
    """moto's S3 server on loopback with a bucket named ``bench``: (something with
    ``stop()``, its endpoint URL, a boto3 client for it, the kind of server it is); None,
    said, without moto and boto3. Served by werkzeug, with a note, where ``kind`` is
    waitress and it is not installed."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer  # noqa: F401
    except ImportError:
        print("skipped: needs moto[server] and boto3 (pip install 'upconv[cloud]' "
              "'moto[server]')")
        return None
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # ("Task queue depth is 5")
    if kind == "waitress" and importlib.util.find_spec("waitress") is None:
        print("waitress is not installed (pip install waitress): serving moto's S3 "
              "application on werkzeug, a connection per request")
        kind = "werkzeug"
    server, endpoint = start_server(kind)
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                          aws_secret_access_key="bench", region_name="us-east-1")
    client.create_bucket(Bucket="bench")
    return server, endpoint, client, kind


def start_server(kind: str):
    """moto's S3 server on loopback: (something with ``stop()``, its endpoint URL)."""
    if kind == "all":
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return server, f"http://{host}:{port}"
    from moto.server import create_backend_app

    if kind == "waitress":
        from waitress.server import create_server

        # Request bodies in memory, as moto keeps the objects (waitress would write every
        # body over 512 KiB to a temporary file, and read it back, before moto sees it).
        served = create_server(create_backend_app("s3"), host="127.0.0.1", port=0,
                               inbuf_overflow=1 << 30)
        thread = threading.Thread(target=served.run, daemon=True)
        thread.start()

        class Stoppable:
            def stop(self) -> None:  # waitress's loop ends once its sockets are closed
                from waitress import wasyncore

                wasyncore.close_all(served._map)
                thread.join(5)
                served.task_dispatcher.shutdown()

        return Stoppable(), f"http://127.0.0.1:{served.effective_port}"
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_backend_app("s3"), threaded=True)
    return _Server(server), f"http://127.0.0.1:{server.port}"


if __name__ == "__main__":
    sys.exit(main())
