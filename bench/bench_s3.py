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
``--server`` chooses which of moto's servers:

- ``s3`` (the default): moto's S3 application alone (``create_backend_app("s3")``),
  served by werkzeug's threaded server speaking HTTP/1.1, so that connections are
  kept alive between requests, as S3's are;
- ``all``: moto's ``ThreadedMotoServer``, which serves every AWS service: it finds
  the service of each request by scanning the folders of moto's ~200 services
  (a few hundred ``stat`` calls per request) and closes the connection after each
  answer (HTTP/1.0).

    python bench/bench_s3.py [--repeat 3] [--files 200] [--server s3|all]

Needs ``pip install 'upconv[cloud]' 'moto[server]'``; skipped cleanly without them.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    parser.add_argument("--server", choices=["s3", "all"], default="s3",
                        help="moto's S3 application alone, kept-alive connections (s3), "
                             "or its server of every service (all)")
    args = parser.parse_args()
    try:
        import boto3
        from moto.server import ThreadedMotoServer  # noqa: F401
    except ImportError:
        print("skipped: needs moto[server] and boto3 (pip install 'upconv[cloud]' "
              "'moto[server]')")
        return 0
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server, endpoint = start_server(args.server)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"],
                          aws_access_key_id="bench", aws_secret_access_key="bench",
                          region_name="us-east-1")
    client.create_bucket(Bucket="bench")
    upconv = [sys.executable, "-m", "upconv", "scale"]
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
          + ("moto's S3 app, HTTP/1.1" if args.server == "s3" else
             "moto's ThreadedMotoServer (every service), HTTP/1.0"))
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


class _Server:
    """A werkzeug server on a thread, stopped with :meth:`stop`."""

    def __init__(self, server) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


def start_server(kind: str):
    """moto's S3 server on loopback: (something with ``stop()``, its endpoint URL)."""
    if kind == "all":
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return server, f"http://{host}:{port}"
    from moto.server import create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class KeepAlive(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"

    server = make_server("127.0.0.1", 0, create_backend_app("s3"), threaded=True,
                         request_handler=KeepAlive)
    return _Server(server), f"http://127.0.0.1:{server.port}"


if __name__ == "__main__":
    sys.exit(main())
