"""Stopping upconv: Ctrl-C, SIGTERM, kill -9, and worker processes that fail.

"Nothing lost, nothing contradictory": whatever stops a run, every output is whole or
absent, a batch's report has a line for every output the batch leaves, no process outlives
upconv, and the next run clears what a killed one left behind. The tests wait for events (a
file, a report line, a line on stderr, the end of a pipe) with generous deadlines, never
for a fixed time.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_images, temporary_files
from PIL import Image

import upconv.cli
from upconv import fileio
from upconv.batch import Job, run_jobs
from upconv.cli import run
from upconv.errors import WorkerError

UPCONV = [sys.executable, "-m", "upconv"]
#: How long any awaited event may take on a loaded machine.
DEADLINE = 60.0
LINUX_PROC = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="needs /proc to find the processes of a session")


def wait_for(condition: Callable[[], bool], what: str,
             process: subprocess.Popen | None = None) -> None:
    """Wait until ``condition()`` holds (an event, polled), or fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"upconv exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {DEADLINE:.0f} s")
        time.sleep(0.02)


def report_images(path: Path) -> list[str]:
    """The output named by each line of a batch report."""
    if not path.exists():
        return []
    return [json.loads(line)["image"] for line in path.read_text().splitlines()]


def outputs(folder: Path) -> set[str]:
    return {str(p) for p in folder.glob("*.png")}


def alive_in_session(session: int) -> list[int]:
    """The processes of a session (its leader's descendants) that have not exited."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _, _, sid = text[text.rindex(")") + 2:].split()[:4]
        if int(sid) == session and state not in "ZX":
            found.append(int(entry))
    return found


@pytest.fixture
def sessions():
    """Batches started in their own session; any process of theirs left is killed after."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], **options) -> subprocess.Popen:
        process = subprocess.Popen(UPCONV + [str(a) for a in args], start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   **options)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        if Path("/proc").exists():  # before closing stderr, which they may hold open
            for pid in alive_in_session(process.pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()


def read_to_end(stream) -> tuple[threading.Thread, list[bytes]]:
    """Read a pipe to its end in a thread: the end comes when every holder has closed it."""
    chunks: list[bytes] = []

    def read() -> None:
        while chunk := stream.read(65536):
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, chunks


# ------------------------------------------------------------------ kill -9

@LINUX_PROC
def test_workers_end_with_a_killed_batch_and_the_next_run_cleans_up(tmp_path, sessions):
    """kill -9 of a batch: its workers and the forkserver leave by themselves (stderr, which
    they all hold, reaches its end), and a --skip-existing rerun finishes with no
    temporary file left."""
    make_images(tmp_path / "in", 40, side=160)
    out = tmp_path / "out"
    args = ["scale", tmp_path / "in", "-o", out, "-f", "4", "--jobs", "2"]
    process = sessions(args)
    wait_for(lambda: bool(outputs(out)), "first output", process)
    helpers = [pid for pid in alive_in_session(process.pid) if pid != process.pid]
    assert len(helpers) >= 2, "a batch with --jobs 2 runs worker processes"  # can outlive it
    process.kill()
    reader, _ = read_to_end(process.stderr)
    reader.join(DEADLINE)
    assert not reader.is_alive(), "a process of the killed batch still holds its stderr"
    process.wait()
    wait_for(lambda: not alive_in_session(process.pid), "end of every process of the batch")
    assert len(outputs(out)) < 40
    resumed = subprocess.run(UPCONV + [str(a) for a in args] + ["--skip-existing", "--quiet"],
                             capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert len(outputs(out)) == 40 and temporary_files(out) == []


# ------------------------------------------------------------------ Ctrl-C and SIGTERM

@LINUX_PROC
@pytest.mark.parametrize(("signum", "status", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                        (signal.SIGTERM, 143, "terminated")])
def test_a_stopped_batch_reports_every_output_it_leaves(tmp_path, sessions, signum, status,
                                                        word):
    """The signal goes to the whole process group, as a terminal's Ctrl-C (or a service
    manager's SIGTERM) does, once the report has a few lines. Every output left has its
    report line; the workers are gone; --skip-existing then finishes the batch and its
    report, one line per image."""
    make_images(tmp_path / "in", 40)
    out = tmp_path / "out"
    out.mkdir()  # the report's folder must exist
    report = out / "rep.jsonl"
    args = ["scale", tmp_path / "in", "-o", out, "-f", "3", "--jobs", "2", "--report", report]
    process = sessions(args)
    wait_for(lambda: len(report_images(report)) >= 3, "three report lines", process)
    os.killpg(process.pid, signum)
    err = process.communicate(timeout=DEADLINE)[1].decode()
    assert process.returncode == status, err
    assert err.strip().splitlines()[-1] == f"upconv: error: {word}"
    assert "Traceback" not in err
    assert temporary_files(out) == []
    assert set(report_images(report)) == outputs(out)
    assert 3 <= len(outputs(out)) < 40
    wait_for(lambda: not alive_in_session(process.pid), "end of the batch's workers")
    resumed = subprocess.run(UPCONV + [str(a) for a in args] + ["--skip-existing"],
                             capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    lines = report_images(report)
    assert len(lines) == 40 and set(lines) == outputs(out)


@LINUX_PROC
def test_a_second_ctrl_c_stops_at_once_and_the_report_stays_complete(tmp_path, sessions):
    """The second Ctrl-C is sent once upconv says it is stopping, while the files in
    progress (big ones) are still being made. Whether it lands before or after they finish,
    every output left is reported and nothing half-made remains."""
    make_images(tmp_path / "in", 12, side=400)
    out = tmp_path / "out"
    out.mkdir()  # the report's folder must exist
    report = out / "rep.jsonl"
    process = sessions(["scale", tmp_path / "in", "-o", out, "-f", "4", "--jobs", "2",
                        "--report", report])
    wait_for(lambda: len(report_images(report)) >= 1, "a report line", process)
    os.killpg(process.pid, signal.SIGINT)
    first = process.stderr.readline().decode()
    assert first.startswith("upconv: stopping after the files in progress"), first
    os.killpg(process.pid, signal.SIGINT)
    err = first + process.communicate(timeout=DEADLINE)[1].decode()
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.count("upconv: error: interrupted") == 1
    assert set(report_images(report)) == outputs(out) and len(outputs(out)) < 12
    wait_for(lambda: not alive_in_session(process.pid), "end of the batch's workers")
    assert temporary_files(out) == []


def ctrl_c() -> None:
    """Send SIGINT to this process; its handler runs before os.kill returns."""
    os.kill(os.getpid(), signal.SIGINT)


def test_a_second_ctrl_c_just_after_a_rename_removes_that_unreported_output(
        tmp_path, capsys, monkeypatch):
    """--jobs 1: the job runs in upconv's own process. Two Ctrl-C right after the second
    image is renamed into place, before its report line: the image goes too."""
    make_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    out.mkdir()
    real_commit = fileio.commit
    commits = []

    def commit_then_ctrl_c_twice(*args, **kwargs):
        real_commit(*args, **kwargs)
        commits.append(args[1])
        if len(commits) == 2:
            ctrl_c()  # stop after this file...
            ctrl_c()  # ...no: at once

    monkeypatch.setattr(fileio, "commit", commit_then_ctrl_c_twice)
    status = run(["scale", str(tmp_path / "in"), "-o", str(out), "-f", "2", "--jobs", "1",
                  "--report", str(out / "rep.jsonl")])
    err = capsys.readouterr().err
    assert status == 130, err
    assert err.splitlines()[-2:] == [
        f"upconv: warning: removed 1 output(s) finished as the batch stopped, too late to be "
        f"reported: {out / 'p01_x2.png'}", "upconv: error: interrupted"]
    assert report_images(out / "rep.jsonl") == [str(out / "p00_x2.png")]
    assert outputs(out) == {str(out / "p00_x2.png")} and temporary_files(out) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back


def test_one_ctrl_c_lets_the_job_in_progress_finish_and_be_reported(tmp_path, capsys,
                                                                   monkeypatch):
    make_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    out.mkdir()
    real_commit = fileio.commit

    def commit_then_ctrl_c(*args, **kwargs):
        real_commit(*args, **kwargs)
        ctrl_c()

    monkeypatch.setattr(fileio, "commit", commit_then_ctrl_c)
    status = run(["scale", str(tmp_path / "in"), "-o", str(out), "-f", "2", "--jobs", "1",
                  "--report", str(out / "rep.jsonl")])
    err = capsys.readouterr().err
    assert status == 130 and err.endswith("upconv: error: interrupted\n"), err
    assert report_images(out / "rep.jsonl") == [str(out / "p00_x2.png")]
    assert outputs(out) == {str(out / "p00_x2.png")}


def test_ctrl_c_just_after_the_rename_leaves_a_whole_output(tmp_path, capsys, monkeypatch):
    make_images(tmp_path, 1)
    out = tmp_path / "big.png"
    real_commit = fileio.commit

    def commit_then_interrupt(*args, **kwargs):
        real_commit(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio, "commit", commit_then_interrupt)
    status = run(["scale", str(tmp_path / "p00.png"), str(out), "-f", "2"])
    err = capsys.readouterr().err
    assert status == 130 and err.splitlines()[-1] == "upconv: error: interrupted", err
    assert "Traceback" not in err
    with Image.open(out) as image:
        image.load()
        assert image.size == (192, 192)
    assert temporary_files(tmp_path) == []


@pytest.mark.parametrize("where", ["summary", "error message", "exit"])
def test_a_ctrl_c_at_any_moment_gives_130_and_one_line(tmp_path, capsys, monkeypatch, where):
    """A Ctrl-C while the summary line is printed, a second one while "interrupted" is
    printed, or one as the run ends: status 130, one "interrupted" line, no traceback."""
    make_images(tmp_path, 1)
    out = tmp_path / "big.png"
    if where == "summary":
        real_summary = upconv.pipeline.ScaleResult.summary

        def summary_then_ctrl_c(self):
            ctrl_c()
            return real_summary(self)

        monkeypatch.setattr(upconv.pipeline.ScaleResult, "summary", summary_then_ctrl_c)
    elif where == "error message":
        real_error = upconv.cli.error

        def interrupted_again(message):
            ctrl_c()  # pressed again while the first is being reported
            real_error(message)

        monkeypatch.setattr(upconv.cli, "error", interrupted_again)
        monkeypatch.setattr(fileio, "commit", lambda *a, **k: ctrl_c())
    else:
        real_flush = upconv.cli._flush_standard_streams

        def flush_then_ctrl_c():
            real_flush()
            ctrl_c()

        monkeypatch.setattr(upconv.cli, "_flush_standard_streams", flush_then_ctrl_c)
    status = run(["scale", str(tmp_path / "p00.png"), str(out), "-f", "2"])
    err = capsys.readouterr().err
    assert status == 130, err
    assert err.count("upconv: error: interrupted") == 1 and "Traceback" not in err
    assert err.splitlines()[-1] == "upconv: error: interrupted"
    if out.exists():
        with Image.open(out) as image:
            image.load()
    assert temporary_files(tmp_path) == []


def test_a_ctrl_c_while_python_exits_gives_130_not_a_traceback(tmp_path):
    """The console script's last moments: the outcome is reported, Python runs its exit
    handlers, and Ctrl-C arrives (here from the last of them)."""
    make_images(tmp_path, 1)
    script = ("import atexit, os, signal, sys\n"
              "def late_ctrl_c():\n"
              "    os.kill(os.getpid(), signal.SIGINT)\n"
              "atexit.register(late_ctrl_c)\n"
              "from upconv.cli import entry_point\n"
              "entry_point()\n")
    done = subprocess.run([sys.executable, "-c", script, "scale", str(tmp_path / "p00.png"),
                           str(tmp_path / "big.png"), "-f", "2", "--quiet"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "upconv: error: interrupted\n"
    with Image.open(tmp_path / "big.png") as image:
        assert image.size == (192, 192)


# ------------------------------------------------------------------ workers that fail

class UnstartableContext(type(multiprocessing.get_context("forkserver"))):
    """A forkserver context whose processes cannot be started (their server went away)."""

    class Process(multiprocessing.get_context("forkserver").Process):
        def start(self):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")


@pytest.mark.parametrize("debug", [False, True])
def test_workers_that_cannot_start_are_reported(tmp_path, capsys, monkeypatch, debug):
    """A broken pipe inside the command is not standard output closing: one line, and
    the traceback with --debug."""
    make_images(tmp_path / "in", 3)
    monkeypatch.setattr(multiprocessing, "get_context",
                        lambda method: UnstartableContext())
    status = run(["scale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-f", "2",
                  "--jobs", "2"] + (["--debug"] if debug else []))
    err = capsys.readouterr().err
    assert status == 1
    assert err.splitlines()[-1] == ("upconv: error: could not start worker processes (Broken "
                                    "pipe); --jobs 1 runs the batch without them")
    assert ("Traceback" in err) == debug
    assert list((tmp_path / "out").iterdir()) == []


def test_a_python_that_cannot_run_is_reported(tmp_path):
    """The Python of the worker processes (and of multiprocessing's other helpers) cannot
    start. Whatever multiprocessing then says on its own is one upconv line too."""
    make_images(tmp_path / "in", 3)
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\nexit 127\n")
    broken.chmod(0o755)
    script = ("import multiprocessing, sys\n"
              f"multiprocessing.set_executable({str(broken)!r})\n"
              "from upconv.cli import entry_point\n"
              "entry_point()\n")
    done = subprocess.run([sys.executable, "-c", script, "scale", str(tmp_path / "in"), "-o",
                           str(tmp_path / "out"), "-f", "2", "--jobs", "2"],
                          capture_output=True, text=True, check=False, timeout=DEADLINE)
    assert done.returncode == 1
    assert "upconv: error: could not start worker processes (" in done.stderr
    assert all(line.startswith("upconv: ") for line in done.stderr.splitlines()), done.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_a_broken_pipe_that_is_not_stdout_is_an_error(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(upconv.cli.scale, "scale_file", broken)
    make_images(tmp_path, 1)
    status = run(["scale", str(tmp_path / "p00.png"), str(tmp_path / "o.png"), "-f", "2"])
    assert status == 1
    assert capsys.readouterr().err == ("upconv: error: unexpected BrokenPipeError: [Errno 32] "
                                       "Broken pipe (rerun with --debug for details)\n")


def write_then_die(job: Job) -> None:
    """A job whose worker dies right after writing its output (before reporting it)."""
    Path(job.output).write_bytes(b"whole, but never reported")
    os._exit(9)


def test_a_worker_that_dies_leaves_no_unreported_output(tmp_path):
    jobs = [Job(str(tmp_path / f"in{i}"), str(tmp_path / f"out{i}")) for i in range(3)]
    with pytest.warns(UserWarning, match="too late to be reported"), \
            pytest.raises(WorkerError, match="a worker process stopped unexpectedly"):
        list(run_jobs(jobs, write_then_die, workers=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_console_script_ends_without_teardown_once_its_work_is_done(tmp_path):
    """The console script ends with os._exit after Python's exit handlers have run and
    the standard streams are flushed (every byte of a long standard output arrives, the
    status is the command's); with a thread still running that Python waits for, it waits
    too (sys.exit)."""
    make_images(tmp_path, 1)
    marker = tmp_path / "handler-ran"
    script = ("import atexit, pathlib, sys, threading, time\n"
              f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('yes'))\n"
              "if sys.argv[1] == 'thread':\n"
              "    sys.argv.pop(1)\n"
              "    def late():\n"
              "        time.sleep(0.5)\n"
              f"        pathlib.Path({str(tmp_path / 'thread-ran')!r}).write_text('yes')\n"
              "    threading.Thread(target=late).start()\n"
              "from upconv.cli import entry_point\n"
              "entry_point()\n")
    done = subprocess.run([sys.executable, "-c", script, "report", str(tmp_path / "p00.png"),
                           "--json"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # (whole)
    assert marker.read_text() == "yes"
    marker.unlink()
    done = subprocess.run([sys.executable, "-c", script, "scale", str(tmp_path / "none.png"),
                           str(tmp_path / "o.png"), "-f", "2"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 1 and done.stderr.startswith("upconv: error:"), done.stderr
    assert marker.read_text() == "yes"
    done = subprocess.run([sys.executable, "-c", script, "thread", "scale",
                           str(tmp_path / "p00.png"), str(tmp_path / "o.png"), "-f", "2",
                           "--quiet"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "thread-ran").read_text() == "yes"
