"""upconv.memory.reusing_freed_memory: glibc's own thresholds for the length of a
computation, where the environment fixed them lower (as Dask's workers do)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
import threading

import pytest

from upconv import memory
from upconv.cli import run


class FakeMallopt:
    def __init__(self):
        self.calls = []

    def __call__(self, parameter, value):
        self.calls.append((parameter, value))
        return 1


@pytest.fixture
def fake(monkeypatch):
    recorder = FakeMallopt()
    monkeypatch.setattr(memory, "_mallopt", lambda: recorder)
    trims = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: trims.append(1))
    recorder.trims = trims
    recorder.environ = {}  # the environment at start-up, as the tests set it
    monkeypatch.setattr(memory, "_startup_environ", lambda: recorder.environ)
    return recorder


SET = [(-3, 32 << 20), (-1, 64 << 20)]


def test_thresholds_are_lifted_and_put_back(fake, monkeypatch):
    fake.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
    with memory.reusing_freed_memory():
        assert fake.calls == SET and not fake.trims
    assert fake.calls == SET + [(-3, 128 << 10), (-1, 65536)] and fake.trims == [1]


def test_tunables_and_both_variables(fake, monkeypatch):
    fake.environ.update(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=0x100000:glibc.foo=1",
                        MALLOC_TRIM_THRESHOLD_="4096")
    with memory.reusing_freed_memory():
        pass
    assert fake.calls[2:] == [(-3, 1 << 20), (-1, 4096)]
    assert memory.fixed_thresholds({"MALLOC_TRIM_THRESHOLD_": "lots"}) is None
    assert memory.fixed_thresholds({"MALLOC_TRIM_THRESHOLD_": str(1 << 32)}) is None


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="needs /proc")
@pytest.mark.parametrize("at_start", [False, True])
def test_the_environment_is_the_one_glibc_read_at_start_up(at_start):
    """A process that started a LocalCluster has Dask's setting in os.environ, but its
    own allocator never read it: only a setting present at start-up counts."""
    script = ("import os; os.environ['MALLOC_TRIM_THRESHOLD_'] = '65536'; "
              "from upconv.memory import fixed_thresholds; print(fixed_thresholds())")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")}
    if at_start:
        env["MALLOC_TRIM_THRESHOLD_"] = "65536"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == ("(131072, 65536)" if at_start else "None")


def test_a_mapping_threshold_glibc_refuses_falls_back_to_its_default(fake):
    fake.environ["MALLOC_MMAP_THRESHOLD_"] = str(64 << 20)  # above glibc's 32 MiB limit
    real_call = fake.__class__.__call__

    def refusing(self, parameter, value):
        real_call(self, parameter, value)
        return 0 if (parameter, value) == (-3, 64 << 20) else 1

    fake.__class__.__call__ = refusing
    try:
        with memory.reusing_freed_memory():
            pass
    finally:
        fake.__class__.__call__ = real_call
    assert fake.calls[2:] == [(-3, 64 << 20), (-3, 128 << 10), (-1, 128 << 10)]


def test_nothing_changes_where_glibc_slides_its_thresholds(fake):
    with memory.reusing_freed_memory():
        pass
    assert fake.calls == [] and fake.trims == []


def test_threads_share_one_lifting(fake, monkeypatch):
    """Set when the first thread enters, put back when the last one leaves."""
    fake.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
    inside, leave = threading.Event(), threading.Event()

    def other():
        with memory.reusing_freed_memory():
            inside.set()
            leave.wait()

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait()
    with memory.reusing_freed_memory():
        assert fake.calls == SET
    assert fake.calls == SET  # the other thread is still inside
    leave.set()
    thread.join()
    assert fake.calls == SET + [(-3, 128 << 10), (-1, 65536)] and fake.trims == [1]


def test_zarr_tasks_run_with_the_thresholds_lifted(fake, monkeypatch, tmp_path, rng):
    zarr = pytest.importorskip("zarr", minversion="3")
    fake.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
    image = rng.random((40, 30, 3))
    array = zarr.create_array(str(tmp_path / "in.zarr"), shape=image.shape, chunks=(16, 16, 3),
                              dtype=image.dtype)
    array[...] = image
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "--pyramid", "1", "--quiet"]) == 0
    lifted = [call for call in fake.calls if call == SET[0]]
    put_back = [call for call in fake.calls if call == (-1, 65536)]
    assert lifted and len(put_back) == len(lifted) == len(fake.trims)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_freed_blocks_are_reused_inside_not_outside():
    """With Dask's MALLOC_TRIM_THRESHOLD_=65536, a 3 MB temporary made again and again is
    a fresh mapping each time (a page fault per 4 KiB); inside, its pages are reused."""
    script = textwrap.dedent("""
        import resource
        import numpy as np
        from upconv.memory import reusing_freed_memory

        def faults():
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

        def churn():
            before = faults()
            for _ in range(40):
                np.ones(3 << 20, np.uint8)  # (written: every page is touched)
            return faults() - before

        outside = churn()
        with reusing_freed_memory():
            inside = churn()
        after = churn()
        print(outside, inside, after)
    """)
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")
    env.pop("GLIBC_TUNABLES", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, check=True)
    outside, inside, after = map(int, result.stdout.split())
    pages = 40 * (3 << 20) // 4096
    assert outside > pages // 2 and after > pages // 2  # fresh pages each time
    assert inside < pages // 10  # the first one's pages, then reused
