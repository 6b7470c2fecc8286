"""``scrapy seed``: validation, line-numbered reasons, counts and exit status."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time
from typing import Any

from tests.conftest import ROOT, SCRAPY, RedisServer, free_port, run_scrapy, scrapy_env


def queued_entries(rclient) -> list[dict[str, object]]:
    out = []
    for prio in rclient.zrange("{site}:prios", 0, -1):
        for entry in rclient.lrange(b"{site}:q:" + prio, 0, -1):
            out.append(json.loads(entry.split(b"|", 2)[2]))
    return out


def test_urls_as_arguments_are_queued(redis_url, rclient):
    result = run_scrapy(["seed", "site", "http://a.test/", "https://b.test/x?y=1"], redis_url)
    assert result.returncode == 0, result.stderr
    assert "2 queued, 0 already seen, 0 rejected" in result.stdout
    assert {e["url"] for e in queued_entries(rclient)} == {"http://a.test/", "https://b.test/x?y=1"}


def test_file_with_bad_lines_rejects_them_and_queues_the_rest(redis_url, rclient, tmp_path):
    seeds = tmp_path / "seeds.txt"
    lines = [
        "http://a.test/1",  # 1 ok
        "ftp://a.test/file",  # 2 scheme
        "not a url",  # 3 not a URL
        '{"url": "http://a.test/2", "priority": 5}',  # 4 ok
        '{"url": "http://a.test/3"',  # 5 bad JSON
        '{"url": "http://a.test/4", "colour": "red"}',  # 6 unknown field
        '{"url": "http://a.test/5", "callback": "no_such_method"}',  # 7 callback
        '{"url": "http://a.test/6", "meta": {"proxy": "http://evil.test"}}',  # 8 meta
        "http://a.test/" + "x" * 3000,  # 9 too long
        "",  # blank: skipped
        '{"url": "http://a.test/7", "callback": "parse", "meta": {"depth": 1}}',  # 11 ok
        "http://a.test/1",  # 12 duplicate
    ]
    seeds.write_text("\n".join(lines) + "\n")
    result = run_scrapy(["seed", "site", "-i", str(seeds)], redis_url)
    assert result.returncode == 1
    err = result.stderr
    assert "line 2: rejected: unsupported scheme 'ftp'" in err
    assert "line 3: rejected: not a URL" in err
    assert "line 5: rejected: bad JSON" in err
    assert "line 6: rejected: unknown field 'colour'" in err
    assert "line 7: rejected: callback 'no_such_method' is not a method of spider 'site'" in err
    assert "line 8: rejected: meta key 'proxy' is not allowed" in err
    assert "line 9: rejected: URL is 3014 characters" in err
    assert "line 1:" not in err and "line 4:" not in err and "line 11:" not in err
    assert "3 queued, 1 already seen, 7 rejected (12 lines read)" in result.stdout
    entries = queued_entries(rclient)
    assert sorted(e["url"] for e in entries) == [
        "http://a.test/1",
        "http://a.test/2",
        "http://a.test/7",
    ]
    by_url = {e["url"]: e for e in entries}
    assert by_url["http://a.test/2"]["priority"] == 5
    assert by_url["http://a.test/7"]["meta"] == {"depth": 1}
    # Highest priority first.
    assert rclient.zrange("{site}:prios", 0, 0) == [b"5"]


def test_stdin_and_reseeding_counts_already_seen(redis_url):
    first = run_scrapy(
        ["seed", "site", "-i", "-"], redis_url, input="http://a.test/1\nhttp://a.test/2\n"
    )
    assert "2 queued, 0 already seen" in first.stdout
    again = run_scrapy(
        ["seed", "site", "-i", "-"], redis_url, input="http://a.test/2\nhttp://a.test/3\n"
    )
    assert again.returncode == 0
    assert "1 queued, 1 already seen, 0 rejected" in again.stdout


def test_missing_file_and_unknown_spider_are_clear(redis_url, tmp_path):
    missing = run_scrapy(["seed", "site", "-i", str(tmp_path / "nope.txt")], redis_url)
    assert missing.returncode == 1
    assert "cannot read seed file" in missing.stderr and "nope.txt" in missing.stderr
    unknown = run_scrapy(["seed", "sitee", "http://a.test/"], redis_url)
    assert unknown.returncode == 1
    assert "unknown spider 'sitee'; spiders in this project: products, site" in unknown.stderr
    crawl = run_scrapy(["crawl", "sitee"], redis_url)
    assert crawl.returncode == 1
    assert "unknown spider 'sitee'; spiders in this project: products, site" in crawl.stderr


def test_unreachable_redis_is_named_with_password_redacted():
    url = "redis://crawler:s3cret-pass@127.0.0.1:1/0"
    for args in (
        ["seed", "site", "http://a.test/"],
        ["crawl", "site"],
        ["export", "site", "-o", "x.jsonl"],
    ):
        result = run_scrapy(args, url)
        assert result.returncode == 1, args
        assert "cannot reach Redis at redis://crawler:***@127.0.0.1:1/0" in result.stderr
        assert "Check that the server is running" in result.stderr
        assert "s3cret-pass" not in result.stderr + result.stdout


def _queued(rclient) -> int:
    return int(rclient.hget("{site}:stats", "queued") or 0)


def _wait_for(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_stream_left_open_is_queued_as_it_comes_and_ctrl_c_stops_it(redis_url, rclient):
    """`tail -f urls | scrapy seed -i -`: each line is queued soon after it
    is written, not once 2,000 more came; Ctrl-C ends the command though the
    pipe stays open. Before: nothing was queued, and Ctrl-C did nothing,
    until the producer wrote 2,000 more lines (or closed the pipe)."""
    proc = _start_seed(redis_url, "-i", "-")
    assert proc.stdin is not None
    try:
        for n, line in enumerate(["http://a.test/1", "ftp://a.test/2", "http://a.test/3"]):
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            if n != 1:
                # The command's start-up (a second or two) included.
                want = (n + 2) // 2
                assert _wait_for(lambda w=want: _queued(rclient) == w, 20), n
        proc.send_signal(signal.SIGINT)
        code = proc.wait(10)  # the pipe still open
        out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130, err
    assert "line 2: rejected: unsupported scheme 'ftp'" in err
    assert "interrupted (Ctrl-C): seeding was interrupted; the summary" in err
    assert "Traceback" not in err
    assert "2 queued, 0 already seen, 1 rejected (3 lines read)" in out


def _failing_after(data: bytes) -> tuple[Any, int]:
    """A real file whose reads fail with EIO after *data* (a page): this
    process's memory through /proc/PID/mem, a regular file, positioned at a
    page holding *data* followed by a page mapped past the end of its file
    (no memory behind it, so the kernel answers EIO, as a failing disk
    does). Returns (the open file, positioned; what keeps the mapping)."""
    page = mmap.PAGESIZE
    assert len(data) == page
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    backing = tempfile.TemporaryFile()
    backing.write(data)
    backing.flush()
    addr = libc.mmap(None, 2 * page, mmap.PROT_READ, mmap.MAP_SHARED, backing.fileno(), 0)
    assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    mem = open(f"/proc/{os.getpid()}/mem", "rb", buffering=0)
    mem.seek(addr)
    assert mem.read(page) == data
    mem.seek(addr)
    return mem, backing


def _page_of_urls() -> tuple[bytes, int]:
    lines = [f"http://a.test/{n}\n" for n in range(200)]
    text = "".join(lines)
    pad = mmap.PAGESIZE - len(text) - len("http://a.test/pad\n")
    return (text + "http://a.test/pad" + "x" * pad + "\n").encode(), len(lines) + 1


def test_a_read_error_mid_file_is_one_line_and_what_was_read_stays_queued(redis_url, rclient):
    """A seed file whose disk fails after its first page (EIO). Before: a
    traceback, no summary, and the batch of lines read was never committed
    (nothing queued); now the lines read are queued, the summary counts
    them, and one error line names the input."""
    data, lines = _page_of_urls()
    mem, backing = _failing_after(data)
    with mem, backing:
        result = subprocess.run(
            [SCRAPY, "seed", "site", "-i", "-"],
            cwd=ROOT,
            env=scrapy_env(redis_url),
            stdin=mem,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{lines} queued, 0 already seen, 0 rejected ({lines} lines read)" in result.stdout
    [error] = result.stderr.splitlines()
    assert error.startswith("error: cannot read standard input: Input/output error;")
    assert "seed it again" in error
    assert _queued(rclient) == lines


def test_a_seed_file_that_cannot_be_read_at_all_is_one_line(redis_url):
    """/proc/self/mem opens, but its first read fails (EIO): a traceback before."""
    result = run_scrapy(["seed", "site", "-i", "/proc/self/mem"], redis_url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "0 queued, 0 already seen, 0 rejected (0 lines read)" in result.stdout
    assert result.stderr.startswith(
        "error: cannot read seed file '/proc/self/mem': Input/output error;"
    )


def test_a_stream_reset_by_its_peer_keeps_what_it_queued(redis_url, rclient):
    """Standard input is a TCP connection the other end resets after 5 lines
    (ECONNRESET mid-stream). Before: a traceback and no summary."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    with peer:
        peer.sendall(b"".join(b"http://a.test/%d\n" % n for n in range(5)))
        proc = subprocess.Popen(
            [SCRAPY, "seed", "site", "-i", "-"],
            cwd=ROOT,
            env=scrapy_env(redis_url),
            stdin=ours,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ours.close()
        try:
            assert _wait_for(lambda: _queued(rclient) == 5, 30)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            peer.close()  # with SO_LINGER 0: a reset, not an end of stream
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert "5 queued, 0 already seen, 0 rejected (5 lines read)" in out
    assert err.splitlines() == [
        "error: cannot read standard input: Connection reset by peer; the lines read "
        "before the error were seeded (the summary says how many lines were read and "
        "queued): check the input and seed it again (what is queued already is counted "
        "as already seen, not queued twice)"
    ]


def _start_seed(redis_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SCRAPY, "seed", "site", *args],
        cwd=ROOT,
        env=scrapy_env(redis_url),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _first_line(stream: Any, timeout: float) -> str:
    """The first line of *stream*, or "" if none came in *timeout* seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


def test_a_fifo_without_a_writer_says_it_waits_and_ctrl_c_ends_the_wait(redis_url, tmp_path):
    """`scrapy seed site -i FIFO` before any process opened FIFO for writing:
    open() blocks. Before: nothing was printed, the first Ctrl-C was ignored
    (Python restarts the open), and the second one ended the command saying
    "a batch in flight may have been queued too"."""
    fifo = tmp_path / "urls.fifo"
    os.mkfifo(fifo)
    proc = _start_seed(redis_url, "-i", str(fifo))
    assert proc.stderr is not None
    try:
        said = _first_line(proc.stderr, 30)
        assert said == (
            f"waiting for a writer on the FIFO {str(fifo)!r}: its lines are queued as they "
            "come (Ctrl-C stops)\n"
        )
        time.sleep(0.5)  # into the blocking open()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(5)  # one Ctrl-C, promptly
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130, err
    assert "0 queued, 0 already seen, 0 rejected (0 lines read)" in out
    assert err.splitlines() == [
        f"interrupted (Ctrl-C): no process opened the FIFO {str(fifo)!r} for writing; "
        "nothing was read"
    ]


def test_a_fifo_is_seeded_once_a_writer_opens_it(redis_url, rclient, tmp_path):
    fifo = tmp_path / "urls.fifo"
    os.mkfifo(fifo)
    proc = _start_seed(redis_url, "-i", str(fifo))
    assert proc.stderr is not None
    try:
        assert "waiting for a writer" in _first_line(proc.stderr, 30)
        with open(fifo, "w") as writer:
            writer.write("http://a.test/1\nhttp://a.test/2\n")
            writer.flush()
            assert _wait_for(lambda: _queued(rclient) == 2, 20)  # the writer still there
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "2 queued, 0 already seen, 0 rejected (2 lines read)" in out


def _aof_redis(tmp_path) -> RedisServer:
    """A real redis-server of this test that keeps its data over a restart
    on the same port (append-only file, each write synced)."""
    server = RedisServer(
        free_port(), tmp_path / "aof", extra=["--appendonly", "yes", "--appendfsync", "always"]
    )
    server.dir.mkdir()
    server.start()
    return server


def _stderr_until(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """What *proc* wrote to stderr up to a line holding *needle*, read from
    the pipe itself (its text wrapper would read ahead of a select), or
    what came in *timeout* seconds."""
    assert proc.stderr is not None
    fd, got = proc.stderr.fileno(), b""
    deadline = time.monotonic() + timeout
    while needle.encode() not in got or not got.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        got += chunk
    return got.decode()


def test_a_stream_waits_for_redis_restarted_and_queues_the_lines_read(tmp_path):
    """`producer | scrapy seed site -i -` while Redis restarts: line 1 is
    queued, Redis stops, line 2 and 3 are written, Redis starts again on the
    same port. Before: the seeder exited 1 at once, lines 2 and 3 read from
    the pipe and never queued, saying "nothing this command did was lost:
    run it again" (a pipe cannot be read again). Now it says once that it
    waits for Redis, and queues them when Redis is back."""
    server = _aof_redis(tmp_path)
    proc = _start_seed(server.url, "-i", "-")
    assert proc.stdin is not None
    client = server.client()
    try:
        proc.stdin.write("http://a.test/1\n")
        proc.stdin.flush()
        assert _wait_for(lambda: _queued(client) == 1, 30)
        server.stop()
        proc.stdin.write("http://a.test/2\nhttp://a.test/3\n")
        proc.stdin.flush()
        said = _stderr_until(proc, "is unreachable", 30)
        assert said.startswith(f"Redis at {server.url} is unreachable (ConnectionError"), said
        assert "cannot be read again, so they are held and queued once it is back" in said
        time.sleep(2)  # a few tries with backoff
        assert proc.poll() is None, "the seeder gave up while Redis was down"
        server.start()
        assert _wait_for(lambda: _queued(client) == 3, 30)
        out, err = proc.communicate(timeout=30)  # the pipe closed: the end of its lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    assert proc.returncode == 0, err
    assert "3 queued, 0 already seen, 0 rejected (3 lines read)" in out
    assert "is unreachable" not in err, "the outage is said once"
    assert err.startswith(f"Redis at {server.url} is reachable again after"), err
    assert "Traceback" not in err


def test_ctrl_c_while_a_stream_waits_for_redis_says_which_lines_were_not_queued(tmp_path):
    """Redis gone and not back: Ctrl-C ends the wait at once, and the
    message says how many seeds read from the pipe were not queued and on
    which lines, as the pipe cannot give them again."""
    server = RedisServer(free_port(), tmp_path)
    server.start()
    proc = _start_seed(server.url, "-i", "-")
    assert proc.stdin is not None
    try:
        proc.stdin.write("http://a.test/1\n")
        proc.stdin.flush()
        assert _wait_for(lambda: _queued(server.client()) == 1, 30)
        server.stop()
        proc.stdin.write("http://a.test/2\nftp://a.test/3\nhttp://a.test/4\n")
        proc.stdin.flush()
        said = _stderr_until(proc, "is unreachable", 30)
        assert f"Redis at {server.url} is unreachable" in said, said
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(5)  # promptly, the pipe still open and Redis gone
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    assert code == 130, err
    err = said + err
    assert "Traceback" not in err
    assert "line 3: rejected: unsupported scheme 'ftp'" in err
    assert err.count("is unreachable") == 1
    assert "1 queued, 0 already seen, 1 rejected (4 lines read)" in out
    assert err.splitlines()[-1] == (
        f"interrupted (Ctrl-C): seeding was interrupted while waiting for Redis at "
        f"{server.url}: 2 seeds read from standard input were NOT queued (in lines 2-4), and "
        "a stream cannot give them again: seed those lines again (any of them queued already "
        "is counted as already seen, not queued twice). The summary above says what was "
        "queued of the lines read."
    )


def test_redis_gone_while_seeding_a_file_says_to_run_it_again_and_that_queues_the_rest(
    tmp_path,
):
    """A file can be read again: Redis gone midway ends the command (exit
    1) with the summary and one line saying to run it again, which, once
    Redis is back, queues the rest and nothing twice. Before: no summary,
    and "nothing this command did was lost"."""
    lines = 1_000_000
    seeds = tmp_path / "urls.txt"
    seeds.write_text("".join(f"http://a.test/{n}\n" for n in range(lines)))
    server = _aof_redis(tmp_path)
    proc = _start_seed(server.url, "-i", str(seeds))
    try:
        assert _wait_for(lambda: _queued(server.client()) > 0, 60)
        server.stop()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        assert proc.returncode == 1, err
        assert "Traceback" not in err
        summary = re.search(r"(\d+) queued, 0 already seen, 0 rejected \((\d+) lines read\)", out)
        assert summary, out
        queued_before = int(summary.group(1))
        assert 0 < queued_before < lines
        [error] = err.splitlines()
        assert error.startswith(f"error: Redis at {server.url} failed (ConnectionError"), error
        assert error.endswith(
            "the summary above says what was queued. Run the same command again once Redis is "
            "back: seeds queued already are counted as already seen, not queued twice."
        ), error
        server.start()
        again = run_scrapy(["seed", "site", "-i", str(seeds)], server.url)
        assert again.returncode == 0, again.stderr
        assert _queued(server.client()) == lines
        # A commit Redis applied as it stopped, its reply lost, counts as seen.
        counts = re.search(r"(\d+) queued, (\d+) already seen, 0 rejected", again.stdout)
        assert counts, again.stdout
        queued, seen = int(counts.group(1)), int(counts.group(2))
        assert queued + seen == lines and seen >= queued_before, (queued, seen, queued_before)
    finally:
        server.stop()
