"""Shared harness for Moonwire's end-to-end tests.

Every tests/e2e/test_*.py is run by ctest as
`/usr/bin/python3 -m unittest -v test_x` in this directory, with

  MOONWIRE_BIN         the moonwire binary under test
  MOONWIRE_SOURCE_DIR  the source tree (examples/, proto/, lua/)
  MOONWIRE_BUILD_DIR   the build tree

What is here:

  Server(dir=None, config=None, args=(), env=None)
      A context manager running `moonwire serve --listen 127.0.0.1:0 ...`.
      `config` is YAML text, written to a temp file and passed with -c.
      Exposes .port, .addr, .pid, .channel(), .logs(), .stdout(), .stop().

  Protos(*dirs)
      Compiles the .proto files of dirs with protoc into a descriptor set and
      builds the message classes at run time: .msg('pkg.Type') and
      .unary/.server_stream/.client_stream/.bidi(channel, '/pkg.Svc/M').

  service_dir(files) / ServiceDir(files)
      Writes a temporary service directory from {name: text}.

  run_cli(*args) -> subprocess.CompletedProcess (text, bounded time)

  RedisServer()
      A context manager running Debian's redis-server on a free loopback
      port, with no persistence; .url(db), .cli(*args), .kill(), .restart(),
      .pause() / .resume() (SIGSTOP / SIGCONT).
"""

import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

MOONWIRE_BIN = os.environ.get("MOONWIRE_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "moonwire")
SOURCE_DIR = os.path.abspath(os.environ.get("MOONWIRE_SOURCE_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD_DIR = os.environ.get("MOONWIRE_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
EXAMPLES = os.path.join(SOURCE_DIR, "examples")
PROTOC = os.environ.get("MOONWIRE_PROTOC") or shutil.which("protoc") or "/usr/bin/protoc"

START_TIMEOUT = 20.0

# gRPC's own protos (Debian's grpc-proto), for the standard services' clients.
GRPC_PROTO_DIR = "/usr/share/grpc-proto"
# Clients only the tests use, installed by tests/tools/setup.sh.
TOOLS_BIN = os.path.join(SOURCE_DIR, "tests", "tools", "node_modules", ".bin")


def tool(name):
    """The path of a test tool (tests/tools/setup.sh installs them; make test
    runs it first)."""
    path = os.path.join(TOOLS_BIN, name)
    if not os.access(path, os.X_OK):
        raise RuntimeError("%s is not installed: run tests/tools/setup.sh" % path)
    return path


_standard = None


def standard_protos():
    """Protos of grpc.health.v1 and grpc.reflection v1 and v1alpha, built
    from Debian's grpc-proto (the clients' side of the standard services)."""
    global _standard
    if _standard is None:
        files = [os.path.join(GRPC_PROTO_DIR, f) for f in (
            "grpc/health/v1/health.proto", "grpc/reflection/v1/reflection.proto",
            "grpc/reflection/v1alpha/reflection.proto")]
        _standard = Protos(files=files, includes=[GRPC_PROTO_DIR])
    return _standard


def example(name):
    """The absolute path of examples/<name>."""
    return os.path.join(EXAMPLES, name)


def dedent(text):
    return textwrap.dedent(text).lstrip("\n")


# --------------------------------------------------------------------------
# temp service directories

class ServiceDir:
    """A temporary directory holding files given as {relative name: text}.

    Usable as a context manager (removes itself on exit) or directly
    (call .cleanup(), or register it with TestCase.addCleanup)."""

    def __init__(self, files=None, prefix="mw-e2e-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        for name, text in (files or {}).items():
            self.write(name, text)

    def write(self, name, text):
        p = os.path.join(self.path, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        mode = "wb" if isinstance(text, bytes) else "w"
        with open(p, mode) as f:
            f.write(text if isinstance(text, bytes) else dedent(text))
        return p

    def file(self, name):
        return os.path.join(self.path, name)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def __str__(self):
        return self.path

    def __fspath__(self):
        return self.path


def service_dir(test, files):
    """A ServiceDir removed when `test` (a TestCase, or None) ends."""
    d = ServiceDir(files)
    if test is not None:
        test.addCleanup(d.cleanup)
    return d


# --------------------------------------------------------------------------
# the CLI

def run_cli(*args, timeout=30, env=None, cwd=None):
    """Runs moonwire with args; returns CompletedProcess (text output)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([MOONWIRE_BIN] + [str(a) for a in args],
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, env=e, cwd=cwd)


# --------------------------------------------------------------------------
# the server

# The binary under test was built with ASan+UBSan: its RSS says little
# (shadow memory, quarantine), and LeakSanitizer checks leaks at exit instead.
SANITIZED = os.environ.get("MOONWIRE_SANITIZE") == "1"

# Waits for something the server does (a log line, a reload, a closed call)
# are this many times longer under the sanitizers, which slow it down.
SLOW = 3 if SANITIZED else 1

# What the sanitizers print when they find something.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:")


class ServerError(AssertionError):
    pass


class Server:
    """`with Server(dir) as s:` runs `moonwire serve --listen 127.0.0.1:0`.

    dir: the service directory (passed last on the command line).
    config: YAML text, written to a temp file and given with -c; relative
        paths in it resolve against that temp dir, so use absolute ones.
    args: more command-line arguments; env: variables added to os.environ
        (a value of None removes the variable).
    listen: the --listen address; None leaves the config's listen list.
    bin: the binary (default MOONWIRE_BIN); cwd: its working directory.

    start() (or entering the with block) waits up to start_timeout seconds
    for `listening on HOST:PORT` on stdout and raises ServerError, with the
    server's stderr, when the server exits first or takes too long. Leaving
    the block (or close()) kills the server if it still runs."""

    def __init__(self, dir=None, config=None, args=(), env=None,
                 start_timeout=START_TIMEOUT, listen="127.0.0.1:0", bin=None,
                 cwd=None):
        self.bin = bin or MOONWIRE_BIN
        self.cwd = cwd
        self.dir = os.fspath(dir) if dir is not None else None
        self.config = config
        self.args = [str(a) for a in args]
        self.env = env
        self.start_timeout = start_timeout
        self.listen = listen
        self.proc = None
        self.pid = None
        self.port = None
        self.addr = None
        self._tmp = None
        self._err = []
        self._err_raw = []
        self._out = []
        self._lock = threading.Lock()
        self._threads = []
        self._listening = threading.Event()
        self._channels = []
        self.returncode = None

    # -- lifetime --

    def start(self):
        cmd = [self.bin, "serve"] + (["--listen", self.listen] if self.listen else [])
        if self.config is not None:
            self._tmp = tempfile.mkdtemp(prefix="mw-e2e-cfg-")
            path = os.path.join(self._tmp, "moonwire.yaml")
            with open(path, "w") as f:
                f.write(dedent(self.config))
            self.config_path = path
            cmd += ["-c", path]
        cmd += self.args
        if self.dir is not None:
            cmd.append(self.dir)
        e = dict(os.environ)
        for k, v in (self.env or {}).items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=e, cwd=self.cwd)
        self.pid = self.proc.pid
        for stream, sink, raw, watch in ((self.proc.stdout, self._out, None, True),
                                         (self.proc.stderr, self._err, self._err_raw, False)):
            t = threading.Thread(target=self._reader, args=(stream, sink, raw, watch),
                                 daemon=True)
            t.start()
            self._threads.append(t)
        deadline = time.monotonic() + self.start_timeout
        while not self._listening.is_set():
            if self.proc.poll() is not None:
                self._join_readers(2)
                rc = self.proc.returncode
                self._cleanup_tmp()
                raise ServerError("moonwire exited with %s before listening\n"
                                  "command: %s\nstdout:\n%s\nstderr:\n%s"
                                  % (rc, " ".join(cmd), self.stdout(), self.logs()))
            if time.monotonic() > deadline:
                self.close()
                raise ServerError("moonwire did not print 'listening on' within %.0f s\n"
                                  "command: %s\nstdout:\n%s\nstderr:\n%s"
                                  % (self.start_timeout, " ".join(cmd),
                                     self.stdout(), self.logs()))
            self._listening.wait(0.05)
        return self

    def _reader(self, stream, sink, raw_sink, watch):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self._lock:
                sink.append(line)
                if raw_sink is not None:
                    raw_sink.append(raw)
            if watch and self.port is None and line.startswith("listening on "):
                addr = line[len("listening on "):].strip()
                host, _, port = addr.rpartition(":")
                self.addr = addr
                self.host = host
                self.port = int(port)
                self._listening.set()
        stream.close()

    def _join_readers(self, timeout):
        for t in self._threads:
            t.join(timeout)

    def _close_channels(self):
        for ch in self._channels:
            try:
                ch.close()
            except Exception:
                pass
        self._channels = []

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Sends sig and waits for the exit; returns the exit code (negative:
        killed by that signal). Kills the server if it does not exit within
        timeout seconds, and raises ServerError then."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise ServerError("moonwire did not exit within %s s of %s\nstderr:\n%s"
                                  % (timeout, signal.Signals(sig).name, self.logs()))
        self._join_readers(2)
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            self._join_readers(2)
            self.returncode = self.proc.returncode

    def _cleanup_tmp(self):
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def close(self):
        self._close_channels()
        self.kill()
        self._cleanup_tmp()

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.close()
            return
        # A clean end: the server must stop gracefully, exit 0 and report
        # nothing from the sanitizers (under the ASan+UBSan build).
        self._close_channels()
        try:
            rc = self.stop(signal.SIGTERM, timeout=30)
        finally:
            self.close()
        problems = [m for m in SANITIZER_MARKS if m in self.logs()]
        if rc not in (0, None) or problems:
            raise ServerError("moonwire did not stop cleanly (exit %s%s)\nstderr:\n%s"
                              % (rc, ", " + ", ".join(problems) if problems else "",
                                 self.logs()))

    # -- use --

    def target(self):
        """The address to dial: the first 'listening on' address."""
        return self.addr

    def channel(self, options=None):
        """A new grpc.insecure_channel to the server (closed with the server)."""
        ch = grpc.insecure_channel(self.target(), options=options or [])
        self._channels.append(ch)
        return ch

    def logs(self):
        """The server's stderr so far."""
        with self._lock:
            return "".join(self._err)

    def log_lines(self):
        """The server's stderr so far as a list of raw lines (bytes)."""
        with self._lock:
            return list(self._err_raw)

    def stdout(self):
        with self._lock:
            return "".join(self._out)

    def wait_log(self, text, timeout=5.0):
        """Waits until text appears in the logs (timeout scaled by SLOW);
        returns whether it did."""
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            if text in self.logs():
                return True
            time.sleep(0.02)
        return text in self.logs()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


# --------------------------------------------------------------------------
# protos

class Protos:
    """Message classes and stubs built at run time from the .proto files."""

    def __init__(self, *dirs, files=None, includes=()):
        self.dirs = [os.path.abspath(os.fspath(d)) for d in dirs]
        if files is None:
            files = []
            for d in self.dirs:
                for name in sorted(os.listdir(d)):
                    if name.endswith(".proto"):
                        files.append(os.path.join(d, name))
        inc = []
        for d in list(self.dirs) + [os.path.abspath(os.fspath(i)) for i in includes]:
            inc.append("-I" + d)
        proj = os.path.join(SOURCE_DIR, "proto")
        if os.path.isdir(proj):
            inc.append("-I" + proj)
        inc.append("-I/usr/include")
        fd, out = tempfile.mkstemp(prefix="mw-e2e-", suffix=".pb")
        os.close(fd)
        try:
            r = subprocess.run([PROTOC] + inc + ["--include_imports",
                                                 "--descriptor_set_out=" + out] + files,
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError("protoc failed:\n" + r.stderr)
            with open(out, "rb") as f:
                data = f.read()
        finally:
            os.unlink(out)
        self.fds = descriptor_pb2.FileDescriptorSet.FromString(data)
        self.pool = descriptor_pool.DescriptorPool()
        for fdp in self.fds.file:
            self.pool.Add(fdp)
        self.factory = message_factory.MessageFactory(self.pool)
        self._classes = {}

    def msg(self, full_name):
        """The message class of full_name ('pkg.Type')."""
        cls = self._classes.get(full_name)
        if cls is None:
            d = self.pool.FindMessageTypeByName(full_name)
            if hasattr(message_factory, "GetMessageClass"):
                cls = message_factory.GetMessageClass(d)
            else:
                cls = self.factory.GetPrototype(d)
            self._classes[full_name] = cls
        return cls

    def method(self, path):
        """The MethodDescriptor of '/pkg.Svc/Method'."""
        svc, _, name = path.strip("/").rpartition("/")
        sd = self.pool.FindServiceByName(svc)
        md = sd.methods_by_name.get(name)
        if md is None:
            raise KeyError("%s has no method %s" % (svc, name))
        return md

    def _call(self, channel, path, kind):
        md = self.method(path)
        req = self.msg(md.input_type.full_name)
        resp = self.msg(md.output_type.full_name)
        make = getattr(channel, kind)
        return make(path, request_serializer=req.SerializeToString,
                    response_deserializer=resp.FromString)

    def unary(self, channel, path):
        return self._call(channel, path, "unary_unary")

    def server_stream(self, channel, path):
        return self._call(channel, path, "unary_stream")

    def client_stream(self, channel, path):
        return self._call(channel, path, "stream_unary")

    def bidi(self, channel, path):
        return self._call(channel, path, "stream_stream")

    def raw_unary(self, channel, path):
        """A unary multicallable sending raw bytes (for malformed requests)."""
        md = self.method(path)
        resp = self.msg(md.output_type.full_name)
        return channel.unary_unary(path, request_serializer=lambda b: b,
                                   response_deserializer=resp.FromString)


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """`with RedisServer() as r:` runs redis-server on 127.0.0.1:r.port,
    in the foreground of a child process, without saving anything. A
    restart keeps the port, so that clients reconnect to the same URL."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="mw-e2e-redis-")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError("redis-server exited with %s" % self.proc.returncode)
            if self.cli("ping").strip() == "PONG":
                return self
            time.sleep(0.02)
        raise ServerError("redis-server did not answer PING on port %d" % self.port)

    def url(self, db=0):
        return "redis://127.0.0.1:%d/%d" % (self.port, db)

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port)] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=10)
        return r.stdout

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self):
        self.kill()
        return self.start()

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.resume()
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def raw_unary(channel, path):
    """A unary multicallable with raw bytes both ways."""
    return channel.unary_unary(path, request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)


class TestCase(unittest.TestCase):
    """unittest.TestCase with the harness's helpers."""

    def service_dir(self, files):
        return service_dir(self, files)

    def assertStatus(self, ctx, code, message=None):
        """ctx: an assertRaises context holding a grpc.RpcError."""
        err = ctx.exception
        self.assertEqual(err.code(), code, "details: %r" % (err.details(),))
        if message is not None:
            self.assertEqual(err.details(), message)


def main():
    unittest.main(verbosity=2)
