"""Ed25519 station keys and C2SP signed-note checkpoints.

Keys are PEM files: PKCS#8 private key (``station.key``, to live in a TPM/HSM in
production) and SubjectPublicKeyInfo public key (``station.pub``), readable with
``openssl pkey``. A key has a *name* (e.g. ``zhichao-station-S001``) used in signed notes.

Checkpoint (c2sp.org/tlog-checkpoint) body::

    <origin>\\n<tree size>\\n<base64 root hash>\\n

signed as a c2sp.org/signed-note: body, blank line, then ``— <name> base64(keyid ‖ sig)``
lines, with ``keyid = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ raw public key)[:4]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from zhichao.evidence.errors import CheckpointError, KeyFileError

EM_DASH = "\u2014"


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: private key file not found") from None
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key_bytes(data: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{where}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{where}: not an Ed25519 public key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: public key file not found") from None
    return load_public_key_bytes(data, str(path))


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key, hex: what a court compares with the published key."""
    return hashlib.sha256(public_raw(key)).hexdigest()


def note_key_id(name: str, key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n\x01" + public_raw(key)).digest()[:4]


def verify_signature(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> bytes:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n".encode()


def sign_checkpoint(checkpoint: Checkpoint, name: str, key: Ed25519PrivateKey) -> bytes:
    body = checkpoint.body()
    sig = key.sign(body)
    kid = note_key_id(name, key.public_key())
    line = f"{EM_DASH} {name} {base64.b64encode(kid + sig).decode()}\n"
    return body + b"\n" + line.encode("utf-8")


def parse_checkpoint(note: bytes) -> tuple[Checkpoint, bytes, list[tuple[str, bytes]]]:
    """Split a signed note into (checkpoint, signed body, [(key name, keyid‖sig)])."""
    try:
        text = note.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("checkpoint is not UTF-8 text") from None
    body, sep, sigs = text.partition("\n\n")
    if not sep:
        raise CheckpointError("checkpoint has no signature block")
    lines = body.split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint body needs origin, size and root lines")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except (ValueError, binascii.Error):
        raise CheckpointError("checkpoint size or root line is malformed") from None
    if size < 0 or len(root) != 32 or str(size) != lines[1]:
        raise CheckpointError("checkpoint size or root line is malformed")
    signatures: list[tuple[str, bytes]] = []
    for line in sigs.splitlines():
        if not line.startswith(EM_DASH + " "):
            raise CheckpointError(f"bad signature line {line[:40]!r}")
        parts = line[2:].split(" ")
        if len(parts) != 2:
            raise CheckpointError(f"bad signature line {line[:40]!r}")
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except binascii.Error:
            raise CheckpointError(f"bad signature encoding on line {line[:40]!r}") from None
        signatures.append((parts[0], blob))
    rendered = body + "\n\n" + "".join(f"{EM_DASH} {name} {base64.b64encode(blob).decode()}\n"
                                        for name, blob in signatures)
    if rendered != text:  # every byte is as signed: nothing stripped, split or added
        raise CheckpointError("checkpoint is not in its canonical form (bytes changed)")
    return Checkpoint(lines[0], size, root), (body + "\n").encode("utf-8"), signatures


def verify_checkpoint(note: bytes, name: str, key: Ed25519PublicKey) -> Checkpoint:
    """Parse and verify a checkpoint signed by (``name``, ``key``); unknown keys are ignored.

    Raises
    ------
    CheckpointError
        If malformed, or no valid signature by that key is present.
    """
    checkpoint, body, signatures = parse_checkpoint(note)
    kid = note_key_id(name, key)
    for sig_name, blob in signatures:
        if sig_name == name and blob[:4] == kid and len(blob) == 68:
            if verify_signature(key, blob[4:], body):
                return checkpoint
            raise CheckpointError(f"signature by {name} on the checkpoint does not verify")
    raise CheckpointError(f"checkpoint carries no signature by key {name} "
                          f"(key id {kid.hex()})")
