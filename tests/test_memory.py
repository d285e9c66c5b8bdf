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
    monkeypatch.setattr(memory, "_held", None)  # (nothing held or lifted by another test)
    monkeypatch.setattr(memory, "_reuse_users", 0)
    yield recorder
    memory.release_held_memory()


SET = [(-3, 32 << 20), (-1, 64 << 20), (-2, 16 << 20)]
PUT_BACK = [(-3, 128 << 10), (-1, 65536), (-2, 128 << 10)]


def test_thresholds_are_lifted_and_put_back(fake, monkeypatch):
    fake.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
    with memory.reusing_freed_memory():
        assert fake.calls == SET and not fake.trims
    assert fake.calls == SET + PUT_BACK and fake.trims == [1]


def test_a_top_pad_fixed_at_start_up_is_put_back(fake):
    fake.environ.update(MALLOC_TRIM_THRESHOLD_="65536", MALLOC_TOP_PAD_="4096")
    with memory.reusing_freed_memory():
        pass
    assert fake.calls[-1] == (-2, 4096)
    fake.calls.clear()
    fake.environ.update(MALLOC_TOP_PAD_="lots")  # (glibc ignores it: its default)
    with memory.reusing_freed_memory():
        pass
    assert fake.calls[-1] == (-2, 128 << 10)
    assert memory.startup_top_pad({"GLIBC_TUNABLES": "glibc.malloc.top_pad=0x1000"}) == 4096


def test_a_held_lifting_lasts_until_released(fake):
    """hold_freed_memory: lifted once however often it is called, put back on release."""
    fake.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
    memory.hold_freed_memory()
    memory.hold_freed_memory()
    with memory.reusing_freed_memory():  # (a task inside the hold)
        pass
    assert fake.calls == SET and not fake.trims
    memory.release_held_memory()
    assert fake.calls == SET + PUT_BACK and fake.trims == [1]
    memory.release_held_memory()  # (nothing held: nothing done)
    assert fake.calls == SET + PUT_BACK and fake.trims == [1]


def test_tunables_and_both_variables(fake, monkeypatch):
    fake.environ.update(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=0x100000:glibc.foo=1",
                        MALLOC_TRIM_THRESHOLD_="4096")
    with memory.reusing_freed_memory():
        pass
    assert fake.calls[3:] == [(-3, 1 << 20), (-1, 4096), (-2, 128 << 10)]
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
    assert fake.calls[3:] == [(-3, 64 << 20), (-3, 128 << 10), (-1, 128 << 10),
                              (-2, 128 << 10)]


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
    assert fake.calls == SET + PUT_BACK and fake.trims == [1]


def test_zarr_jobs_run_with_the_thresholds_lifted(fake, monkeypatch, tmp_path, rng):
    zarr = pytest.importorskip("zarr", minversion="3")
    fake.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
    image = rng.random((40, 30, 3))
    array = zarr.create_array(str(tmp_path / "in.zarr"), shape=image.shape, chunks=(16, 16, 3),
                              dtype=image.dtype)
    array[...] = image
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "--pyramid", "1", "--quiet"]) == 0
    # lifted once for the whole job (its tasks one after another keep the freed memory),
    # put back at its end
    assert fake.calls == SET + PUT_BACK and fake.trims == [1]


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
    result = subprocess.run([sys.executable, "-c", _SMALL_PAGES + script],
                            env=_child_environment(), capture_output=True, text=True,
                            check=True)
    outside, inside, after = map(int, result.stdout.split())
    pages = 40 * (3 << 20) // 4096
    assert outside > pages // 2 and after > pages // 2  # fresh pages each time
    assert inside < pages // 10  # the first one's pages, then reused


#: Run first in the tests' child processes: their pages are 4 KiB ones whatever the
#: machine's transparent huge pages setting (``PR_SET_THP_DISABLE``; NumPy's own advice
#: off), so that page faults count 4 KiB pages.
_SMALL_PAGES = textwrap.dedent("""
    import ctypes
    import os
    ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE
    os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"
""")


def _child_environment() -> dict[str, str]:
    """Dask's setting, and none of the others that would change what glibc does."""
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")
    for name in ("GLIBC_TUNABLES", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_",
                 "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX"):
        env.pop(name, None)
    return env


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
@pytest.mark.parametrize("pad", ["raised", "glibc's"])
def test_a_threads_emptied_heap_is_kept_while_held(pad):
    """In a thread other than the main one, more than one heap's worth (64 MiB) of blocks
    made and freed again and again: held, the thread's second heap is kept, and after the
    first rounds nothing is faulted in; with the top pad put back at glibc's 128 KiB (the
    control), the second heap is unmapped each time it empties and its pages are faulted
    in anew each round."""
    script = _SMALL_PAGES + textwrap.dedent(f"""
        import ctypes
        import resource
        import threading
        import numpy as np
        from upconv.memory import hold_freed_memory, release_held_memory

        def faults():
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

        rounds = []

        def churn():
            for _ in range(5):
                before = faults()
                held = [np.ones(3 << 19) for _ in range(6)]  # 6 x 12 MiB
                while held:
                    held.pop()  # (the last made freed first)
                rounds.append(faults() - before)

        hold_freed_memory()
        if {pad == "glibc's"!r}:
            ctypes.CDLL(None).mallopt(-2, 128 << 10)  # M_TOP_PAD
        worker = threading.Thread(target=churn)
        worker.start()
        worker.join()
        release_held_memory()
        print(*rounds)
    """)
    result = subprocess.run([sys.executable, "-c", script], env=_child_environment(),
                            capture_output=True, text=True, check=True)
    first, *again = map(int, result.stdout.split())
    pages = 6 * (12 << 20) // 4096
    assert first > pages // 2  # (the first round faults its pages in)
    if pad == "raised":  # (the second round may still move a block into the kept heap)
        assert sum(again[1:]) < pages // 50, again
    else:  # the second heap's block faulted in again each round
        assert min(again) > pages // 8, again
