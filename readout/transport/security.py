"""Who may drive the DAQ: loopback by default, ZeroMQ CURVE with listed client keys otherwise.

Key layout made by ``agetdaq keys DIR``::

    DIR/server.key, DIR/server.key_secret       the DAQ server's pair
    DIR/clients/<name>.key                       public keys of the clients allowed in
    DIR/<name>.key, DIR/<name>.key_secret        a client pair (copy to the client machine)

A control socket bound to anything but loopback refuses to start without keys, and then accepts
only clients whose public key is in ``DIR/clients``. The monitoring stream needs no key: it is
read-only and can be published to the counting room without exposing control.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

LOOPBACK_HOSTS = ("127.", "localhost", "[::1]", "::1")

_authenticators: dict[int, ThreadAuthenticator] = {}


class SecurityError(ValueError):
    """Missing or unusable keys for a non-loopback control socket."""


def is_loopback(endpoint: str) -> bool:
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0]
    return host.startswith(LOOPBACK_HOSTS)


def create_keys(directory: str | Path, clients: tuple[str, ...] = ("gui",)) -> list[Path]:
    """Server pair plus one pair per client; client public keys go to ``clients/``. The
    directory is private (0700) and every secret key readable by its owner only (0600), also
    while it is written (umask 077)."""
    d = Path(directory)
    old_umask = os.umask(0o077)
    try:
        (d / "clients").mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        made = []
        if not (d / "server.key_secret").exists():
            made += [Path(p) for p in zmq.auth.create_certificates(str(d), "server")]
        for name in clients:
            if not (d / f"{name}.key_secret").exists():
                pub, sec = zmq.auth.create_certificates(str(d), name)
                shutil.copy(pub, d / "clients" / f"{name}.key")
                made += [Path(pub), Path(sec), d / "clients" / f"{name}.key"]
    finally:
        os.umask(old_umask)
    for secret in d.glob("*.key_secret"):  # also the ones an older version left readable
        secret.chmod(0o600)
    return made


def control_socket_setup(
    endpoint: str, keys_dir: str | Path | None, context: zmq.Context | None = None
) -> Callable[[zmq.Socket], None] | None:
    """Socket set-up for a control server bound at ``endpoint`` (None = plain loopback)."""
    if keys_dir is None:
        if is_loopback(endpoint):
            return None
        raise SecurityError(
            f"binding run control to {endpoint} needs CURVE keys: run `agetdaq keys DIR` "
            "and pass --keys DIR (loopback endpoints need none)"
        )
    d = Path(keys_dir)
    try:
        public, secret = zmq.auth.load_certificate(str(d / "server.key_secret"))
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot load the server key from {d}: {exc}") from exc
    if not (d / "clients").is_dir():
        raise SecurityError(f"{d}/clients holds no authorised client keys")
    ctx = context or zmq.Context.instance()
    if id(ctx) not in _authenticators:
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain="*", location=str(d / "clients"))
        _authenticators[id(ctx)] = auth

    def setup(sock: zmq.Socket) -> None:
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True

    return setup


def client_socket_setup(keys_dir: str | Path, name: str = "gui") -> Callable[[zmq.Socket], None]:
    """Socket set-up for a control client holding ``name``'s pair and the server public key."""
    d = Path(keys_dir)
    try:
        server_public, _ = zmq.auth.load_certificate(str(d / "server.key"))
        public, secret = zmq.auth.load_certificate(str(d / f"{name}.key_secret"))
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot load client keys from {d}: {exc}") from exc

    def setup(sock: zmq.Socket) -> None:
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_serverkey = server_public

    return setup


def stop_authenticators() -> None:
    for auth in _authenticators.values():
        auth.stop()
    _authenticators.clear()
