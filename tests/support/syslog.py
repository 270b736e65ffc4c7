"""A real syslog receiver: Debian `rsyslog` (+ `rsyslog-gnutls`) in the foreground on loopback.

`start_rsyslog()` writes its own config into a temp dir: one `imtcp` listener for plain TCP
(RFC 6587, octet-counting or LF framing) and one with the `gtls` stream driver for TLS
(RFC 5425) with a server certificate from a test CA made here. Every message received is
written as one JSON line (the raw message and rsyslog's RFC 5424 parse of it) to a file per
listener, which `messages()` reads. Started with `rsyslogd -n`, stopped by PID.
"""
from __future__ import annotations

import glob
import json
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .procs import Proc, free_port, port_open, wait_until
from .tlscerts import CertAuthority, make_ca

RSYSLOGD = "/usr/sbin/rsyslogd"
GTLS_DRIVER = "/usr/lib/*/rsyslog/lmnsd_gtls.so"  # from rsyslog-gnutls
FIELDS = ("rawmsg", "pri", "syslogseverity", "syslogfacility", "timereported", "hostname",
          "app-name", "procid", "msgid", "structured-data", "msg", "fromhost-ip", "protocol-version")


def rfc5424(msg: str, *, pri: int = 110, app: str = "tcia-gateway", msgid: str = "-",
            sd: str = "-", hostname: str = "localhost", procid: str = "-") -> bytes:
    """An RFC 5424 6 message: PRI VERSION TIMESTAMP HOSTNAME APP PROCID MSGID SD MSG."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    head = f"<{pri}>1 {stamp} {hostname} {app} {procid} {msgid} {sd}"
    return f"{head} \ufeff{msg}".encode()  # 6.4: a UTF-8 MSG starts with the BOM


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 3.4.1 / RFC 5425 4.3: MSG-LEN SP SYSLOG-MSG."""
    return str(len(message)).encode() + b" " + message


@dataclass
class Rsyslog:
    root: Path
    tcp_port: int
    tls_port: int
    ca: CertAuthority
    proc: Proc

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.tcp_port}"

    @property
    def tls_url(self) -> str:
        return f"tls://127.0.0.1:{self.tls_port}"

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context trusting only the test CA (RFC 5425 5.2: verify the server)."""
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def send(self, *messages: bytes, tls: bool = False, context: ssl.SSLContext | None = None,
             server_hostname: str = "127.0.0.1") -> None:
        """Send octet-counted frames over one connection (TCP, or TLS with `context`)."""
        port = self.tls_port if tls else self.tcp_port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            if tls:
                ctx = context or self.client_context()
                with ctx.wrap_socket(raw, server_hostname=server_hostname) as sock:
                    sock.sendall(b"".join(octet_counted(m) for m in messages))
                    try:
                        sock.unwrap()  # our close_notify (RFC 5425 4.4); rsyslog sends none back
                    except (ssl.SSLError, OSError):
                        pass
            else:
                raw.sendall(b"".join(octet_counted(m) for m in messages))

    def messages(self, listener: str = "tcp") -> list[dict[str, Any]]:
        """Every message received so far on `listener` ("tcp" or "tls"), oldest first."""
        path = self.root / f"{listener}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_for(self, match: Callable[[dict[str, Any]], bool], *, listener: str = "tcp",
                 timeout: float = 5) -> dict[str, Any]:
        """The first received message that `match`es, polling until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages(listener):
                if match(m):
                    return m
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching message on {listener} after {timeout} s; "
                                   f"internal log:\n{self.internal_log()}")
            time.sleep(0.05)

    def internal_log(self) -> str:
        """rsyslogd's own messages (it prints them to stderr in the foreground)."""
        return self.proc.log_tail()

    def close(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _template() -> str:
    """A JSON-lines template: each field rsyslog parsed, JSON-escaped (format="jsonf")."""
    dates = {"timereported": ' dateFormat="rfc3339"'}
    props = '\n  constant(value=",")\n'.join(
        f'  property(outname="{f}" name="{f}" format="jsonf"{dates.get(f, "")})' for f in FIELDS)
    return f'template(name="jsonl" type="list") {{\n  constant(value="{{")\n{props}\n' \
           '  constant(value="}\\n")\n}'


def _config(root: Path, tcp_port: int, tls_port: int, cert: Path, key: Path, ca: Path) -> str:
    return f"""
global(workDirectory="{root}/work" maxMessageSize="256k"
       parser.escapeControlCharactersOnReceive="off"
       defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" maxSessions="200")
{_template()}
ruleset(name="tcp") {{ action(type="omfile" file="{root}/tcp.jsonl" template="jsonl") }}
ruleset(name="tls") {{ action(type="omfile" file="{root}/tls.jsonl" template="jsonl") }}
input(type="imtcp" name="tcp" address="127.0.0.1" port="{tcp_port}" ruleset="tcp")
input(type="imtcp" name="tls" address="127.0.0.1" port="{tls_port}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"""


def start_rsyslog(log_dir: Path, timeout: float = 10) -> Rsyslog:
    """rsyslogd -n with a config of its own; ready when both listeners accept."""
    if not Path(RSYSLOGD).exists() or not glob.glob(GTLS_DRIVER):
        raise FileNotFoundError("rsyslog or rsyslog-gnutls missing: run .ci/install")
    root = Path(tempfile.mkdtemp(prefix="tcia-rsyslog-"))
    (root / "work").mkdir()
    ca = make_ca(root / "pki")
    server = ca.issue(root / "pki", "syslog-server")
    tcp_port, tls_port = free_port(), free_port()
    conf = root / "rsyslog.conf"
    conf.write_text(_config(root, tcp_port, tls_port, server.cert, server.key, ca.cert))
    check = Proc([RSYSLOGD, "-N1", "-f", str(conf)], root / "check.log")
    if check.start().popen.wait(timeout=30) != 0:
        raise RuntimeError(f"rsyslog config refused:\n{check.log_tail()}")
    proc = Proc([RSYSLOGD, "-n", "-iNONE", "-f", str(conf)],
                log_dir / f"rsyslog-{tcp_port}.log").start()
    receiver = Rsyslog(root, tcp_port, tls_port, ca, proc)
    try:
        wait_until(lambda: port_open(tcp_port) and port_open(tls_port), timeout=timeout,
                   what="rsyslogd", proc=proc)
    except BaseException:
        receiver.close()
        raise
    return receiver
