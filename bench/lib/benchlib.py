"""Shared helpers for safe-watch's benchmarks (bench/b*): processes, HTTP probes, the hello-server
fixture, statistics and tables. Standard library only.

Every process a benchmark starts goes through `Proc`, which puts it in its own process group and
stops it by that id (never by name). All traffic goes to 127.0.0.1.
"""

import errno
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH)
HELLO_SOURCE = os.path.join(ROOT, "Examples", "hello-server")
VERSION_FILE = os.path.join("Sources", "hello-server", "Version.swift")

VERSION_TEMPLATE = """// The version served by `GET /` and `GET /slow`.
// Integration tests rewrite the next line with sed to simulate a deploy of a
// new version, so keep it exactly in the shape `let version = "<value>"`.
let version = "{}"
"""
# A type error: the build fails with one diagnostic, like a typo would.
BROKEN_TEMPLATE = VERSION_TEMPLATE.replace('let version = "{}"', 'let version: Int = "{}"')


def now():
    """Wall-clock seconds (CLOCK_REALTIME), comparable with `date +%s.%N` in shell stamps."""
    return time.time()


def log(message):
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# MARK: - safe-watch binary


def safe_watch_binary():
    """The release build made by bench/setup (override with $SAFE_WATCH)."""
    path = os.environ.get("SAFE_WATCH") or os.path.join(ROOT, ".build-bench", "release", "safe-watch")
    if not os.access(path, os.X_OK):
        sys.exit(f"{path} is missing: run bench/setup first (or set SAFE_WATCH)")
    return path


def require(*commands):
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run bench/setup first")


# MARK: - Processes


class Proc:
    """A child in its own process group; its output lines are timestamped on arrival.

    `lines` holds (arrival time, line) for stdout and stderr merged (when `capture`); everything
    is also appended to `logfile`.
    """

    def __init__(self, argv, cwd=None, env=None, logfile=None, capture=True, stdin=None, shell=False):
        self.argv = argv
        self.lines = []
        self.lock = threading.Lock()
        self.logfile = open(logfile, "a", buffering=1) if logfile else None
        extra = dict(os.environ)
        if env:
            extra.update(env)
        self.popen = subprocess.Popen(
            argv, cwd=cwd, env=extra, shell=shell,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.reader = None
        if capture:
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()

    def _read(self):
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            stamp = now()
            with self.lock:
                self.lines.append((stamp, line))
            if self.logfile:
                self.logfile.write(f"{stamp:.6f} {line}\n")

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def wait_for_line(self, pattern, timeout, since=0.0):
        """The first (time, line, match) at or after `since` whose line matches, or None."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for stamp, line in self.snapshot():
                if stamp >= since:
                    match = regex.search(line)
                    if match:
                        return stamp, line, match
            if self.popen.poll() is not None:
                time.sleep(0.2)  # let the reader catch the last lines
                for stamp, line in self.snapshot():
                    if stamp >= since and regex.search(line):
                        return stamp, line, regex.search(line)
                return None
            time.sleep(0.01)
        return None

    def alive(self):
        return self.popen.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Signals the process (then its group), waits, and SIGKILLs the group if it lingers."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.argv!r} (pid {self.pid}) did not stop in {timeout} s: SIGKILL")
        # Whatever is left in the group it leads (pgid == pid, from start_new_session).
        for s in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, s)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.3)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.reader:
            self.reader.join(timeout=2)
        if self.logfile:
            self.logfile.close()
            self.logfile = None
        return self.popen.returncode


def kill_processes_under(directory):
    """Safety net: SIGKILLs, by pid, any process whose cwd or executable lies under `directory`
    (a server that escaped its group). Returns the pids killed."""
    directory = os.path.realpath(directory)
    killed = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        for link in ("cwd", "exe"):
            try:
                target = os.readlink(f"/proc/{pid}/{link}")
            except OSError:
                continue
            target = target.removesuffix(" (deleted)")
            if target == directory or target.startswith(directory + "/"):
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
                break
    return killed


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (field 3, state, is index 0), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_tree(pid):
    """`pid` and every live descendant (by parent pid, so children that made their own process
    group or session count too), as a list of pids."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo and len(tree) < 10000:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def tree_cpu_seconds(pid):
    """CPU seconds (user + system) used so far by `pid` and its descendants: utime + stime of every
    live process of the tree, plus cutime + cstime (children that exited and were waited for).
    None when `pid` is gone."""
    if _stat_fields(pid) is None:
        return None
    total = 0
    for member in process_tree(pid):
        fields = _stat_fields(member)
        if fields:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def anonymous_rss_kib(pid):
    """RssAnon of one process in KiB (its own heap and stacks, no shared library pages); None when gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_kib(pid):
    """(VmRSS, VmHWM) of one process in KiB, from /proc/PID/status; (None, None) when gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values.get("VmRSS"), values.get("VmHWM")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# MARK: - HTTP


class Result:
    """One request: when it started, how long it took, and how it ended."""

    __slots__ = ("start", "seconds", "outcome", "status", "body")

    def __init__(self, start, seconds, outcome, status=None, body=b""):
        self.start = start
        self.seconds = seconds
        self.outcome = outcome  # "ok", "http-<code>", "refused", "reset", "timeout", "closed", "error:<errno>"
        self.status = status
        self.body = body

    @property
    def ok(self):
        return self.outcome == "ok"


def http_get(port, path="/", timeout=5.0, host="127.0.0.1"):
    """GET on a new connection with `Connection: close`; never raises. 2xx is "ok"."""
    start = now()
    t0 = time.monotonic()
    sock = None
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        header_end = -1
        length = None
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if header_end < 0:
                header_end = data.find(b"\r\n\r\n")
                if header_end >= 0:
                    match = re.search(rb"(?im)^content-length:\s*(\d+)", data[:header_end])
                    length = int(match.group(1)) if match else None
            if header_end >= 0 and length is not None and len(data) >= header_end + 4 + length:
                break
        seconds = time.monotonic() - t0
        if header_end < 0 or (length is not None and len(data) < header_end + 4 + length):
            return Result(start, seconds, "closed")  # connection ended before a whole response
        status_line = data.split(b"\r\n", 1)[0].split()
        status = int(status_line[1]) if len(status_line) >= 2 and status_line[1].isdigit() else 0
        body = data[header_end + 4:]
        return Result(start, seconds, "ok" if 200 <= status < 300 else f"http-{status}", status, body)
    except ConnectionRefusedError:
        return Result(start, time.monotonic() - t0, "refused")
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return Result(start, time.monotonic() - t0, "reset")
    except socket.timeout:
        return Result(start, time.monotonic() - t0, "timeout")
    except OSError as error:
        return Result(start, time.monotonic() - t0, f"error:{errno.errorcode.get(error.errno, error.errno)}")
    finally:
        if sock is not None:
            sock.close()


def served_version(result):
    """The version in a `hello-server <V>` or `slow <V>` body, or None."""
    if not result.ok:
        return None
    text = result.body.decode("utf-8", "replace").strip()
    parts = text.split(" ", 1)
    return parts[1] if len(parts) == 2 else None


def wait_until_serving(port, version=None, timeout=300.0, interval=0.05, proc=None):
    """Waits until GET / answers 2xx (with `version`, if given). Returns the time or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = http_get(port, "/", timeout=2)
        if result.ok and (version is None or served_version(result) == version):
            return now()
        if proc is not None and not proc.alive():
            return None
        time.sleep(interval)
    return None


class VersionPoller(threading.Thread):
    """Polls GET / on a new connection every `interval` and remembers when each version was first
    served, plus every result (for the broken-build check)."""

    def __init__(self, port, interval=0.01):
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.results = []
        self.first_seen = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            result = http_get(self.port, "/", timeout=5)
            version = served_version(result)
            with self.lock:
                self.results.append((result, version))
                if version is not None and version not in self.first_seen:
                    self.first_seen[version] = result.start + result.seconds
            self.stopping.wait(self.interval)

    def seen(self, version):
        with self.lock:
            return self.first_seen.get(version)

    def wait_for(self, version, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.seen(version)
            if seen is not None:
                return seen
            time.sleep(0.002)
        return None

    def between(self, start, end):
        with self.lock:
            return [(r, v) for r, v in self.results if start <= r.start <= end]

    def stop(self):
        self.stopping.set()
        self.join(timeout=10)


# MARK: - The hello-server fixture


def write_version(project, version, broken=False):
    """Rewrites Version.swift in place (open, truncate, write, close: one save)."""
    path = os.path.join(project, VERSION_FILE)
    text = (BROKEN_TEMPLATE if broken else VERSION_TEMPLATE).format(version)
    t = now()
    with open(path, "w") as f:
        f.write(text)
    return t


def prepare_hello_server(workdir, version="0"):
    """Copies Examples/hello-server to `workdir`/hello-server and builds it once (debug), so the
    contenders start from an up-to-date build. Returns the project directory."""
    project = os.path.join(workdir, "hello-server")
    shutil.copytree(HELLO_SOURCE, project, ignore=shutil.ignore_patterns(".build", ".build-*", ".safe-watch", ".swiftpm"))
    write_version(project, version)
    log(f"building hello-server in {project} (first build: may take a minute)")
    started = time.monotonic()
    subprocess.run(["swift", "build", "--product", "hello-server"], cwd=project, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    log(f"hello-server built in {time.monotonic() - started:.1f} s")
    # Let the build's whole-second mtimes settle before the first edit (SwiftPM compares seconds).
    time.sleep(1.1)
    return project


def release_hello_server(workdir):
    """A release build of Examples/hello-server (copied to `workdir`/hello-server-release, built
    there with its own scratch path), or $HELLO_SERVER when set. Returns the executable's path."""
    given = os.environ.get("HELLO_SERVER")
    if given:
        if not os.access(given, os.X_OK):
            sys.exit(f"HELLO_SERVER={given} is not executable")
        return given
    project = os.path.join(workdir, "hello-server-release")
    if not os.path.isdir(project):
        shutil.copytree(HELLO_SOURCE, project, ignore=shutil.ignore_patterns(".build", ".build-*", ".safe-watch", ".swiftpm"))
    log(f"building hello-server (release) in {project}")
    started = time.monotonic()
    subprocess.run(["swift", "build", "-c", "release", "--product", "hello-server"], cwd=project, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    binary = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=project, check=True,
                            capture_output=True, text=True).stdout.strip()
    log(f"hello-server (release) built in {time.monotonic() - started:.1f} s")
    return os.path.join(binary, "hello-server")


def process_cpu_seconds(pid):
    """utime + stime of one process (all its threads), or None when gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_stamped_build(path, stamps, command="swift build --product hello-server"):
    """A build script that appends `start <t>` and `end <t> <status>` to `stamps`."""
    with open(path, "w") as f:
        f.write(f"""#!/bin/sh
echo "start $(date +%s.%N)" >> '{stamps}'
{command}
status=$?
echo "end $(date +%s.%N) $status" >> '{stamps}'
exit $status
""")
    os.chmod(path, 0o755)
    return path


def read_stamps(path):
    """[(kind, time, status or None)] from a stamped build's file."""
    entries = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    entries.append((parts[0], float(parts[1]), int(parts[2]) if len(parts) > 2 else None))
    except FileNotFoundError:
        pass
    return entries


def first_stamp(path, kind, after, before=math.inf):
    for k, t, status in read_stamps(path):
        if k == kind and after <= t < before:
            return t, status
    return None


# MARK: - Statistics and tables


def percentile(values, p):
    """Linear-interpolated percentile (p in 0...100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values):
    return percentile(values, 50)


def ms(seconds, digits=1):
    return "—" if seconds is None else f"{seconds * 1000:.{digits}f}"


def table(headers, rows, align=None):
    """Plain-text table (also valid Markdown)."""
    cells = [[str(c) for c in headers]] + [[("—" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def numeric(text):
        try:
            float(text.rstrip("%x× ").replace(",", ""))
            return True
        except ValueError:
            return text == "—"

    align = align or [">" if all(numeric(row[i]) for row in cells[1:]) else "<" for i in range(len(headers))]

    def fmt(row):
        return "| " + " | ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths)) + " |"

    lines = [fmt(cells[0]), "|" + "|".join(("-" * (w + 1) + ":" if a == ">" else "-" * (w + 2)) for a, w in zip(align, widths)) + "|"]
    lines += [fmt(row) for row in cells[1:]]
    return "\n".join(lines)


def machine_description():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}"


def header(title, argv):
    print(f"# {title}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; machine: {machine_description()}; load average at start: {load}")
    print(f"command: {' '.join(argv)}")
    print(flush=True)


def make_workdir(name, keep_dir=None):
    base = keep_dir or tempfile.mkdtemp(prefix=f"safe-watch-{name}-")
    os.makedirs(base, exist_ok=True)
    return base


def save_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=str)


def jitter(low, high):
    return random.uniform(low, high)
