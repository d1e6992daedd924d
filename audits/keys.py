"""Ed25519 signing keys for trail checkpoints, and the installation key.

Where the keys live (see ``docs/store.md``)::

    $RECGOV_HOME/keys/signing-key.pem      private signing key, PKCS#8 PEM, mode 0600
                                           (or RECGOV_SIGNING_KEY_PATH)
    $RECGOV_HOME/keys/<key_id>.pub.pem     public key of every signing key ever used
    $RECGOV_HOME/keys/installation.key     64 hex digits, mode 0600 (or RECGOV_INSTALLATION_KEY)

A key id is the first 32 hex digits of the SHA-256 of the raw 32-byte public
key. Keys are created on first use. Rotation (:func:`rotate_signing_key`)
deletes the private key and makes a new one with a new id; the old public key
stays (in its ``.pub.pem`` file and in the ``signing_keys`` table), so old
checkpoints remain verifiable.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audits.settings import StoreSettings, get_settings
from recommender.errors import ConfigError, DataError

__all__ = [
    "SigningKey",
    "key_id_of",
    "load_signing_key",
    "rotate_signing_key",
    "load_public_key",
    "verify_signature",
    "installation_key",
    "installation_public_keys",
]

ALGORITHM = "ed25519"


@dataclass(frozen=True)
class SigningKey:
    """A private key that signs checkpoints, with its public half and id."""

    private_key: Ed25519PrivateKey
    key_id: str
    public_key_pem: str
    path: Path

    def sign(self, message: bytes) -> str:
        """Sign ``message``; the signature as hex."""
        return self.private_key.sign(message).hex()


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The id of a public key: the first 32 hex digits of SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256(raw).hexdigest()[:32]


def _public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(
        "ascii"
    )


def load_public_key(pem: bytes | str) -> Ed25519PublicKey:
    """Parse a PEM public key; it must be Ed25519.

    Raises
    ------
    DataError
        Not a PEM public key, or not an Ed25519 one.
    """
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise DataError(f"not a PEM public key: {err}") from err
    if not isinstance(key, Ed25519PublicKey):
        raise DataError(f"expected an Ed25519 public key, got {type(key).__name__}")
    return key


def verify_signature(public_key: Ed25519PublicKey, signature_hex: str, message: bytes) -> bool:
    """Whether ``signature_hex`` is ``public_key``'s signature of ``message``."""
    try:
        public_key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def _check_private_mode(path: Path) -> None:
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"the private key {path} is readable by others (mode {mode:04o}); restrict it with `chmod 600 {path}`"
        )


def _write_new_private(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` (mode 0600) unless it exists; True if this call created it."""
    _private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # atomic: fails if another process got there first
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _write_public(keys_dir: Path, key: SigningKey) -> None:
    target = keys_dir / f"{key.key_id}.pub.pem"
    if not target.exists():
        _private_dir(keys_dir)
        target.write_text(key.public_key_pem)


def load_signing_key(
    path: Path | None = None, *, create: bool = True, settings: StoreSettings | None = None
) -> SigningKey:
    """Load the checkpoint signing key (default location: see module doc); create it if missing.

    Raises
    ------
    ConfigError
        The file is missing (and ``create`` is false), unreadable, not an
        Ed25519 private key, or readable by group or others.
    """
    settings = settings or get_settings()
    path = Path(path) if path is not None else settings.resolved_signing_key_path()
    if not path.exists():
        if not create:
            raise ConfigError(f"no signing key at {path}; `recgov trail checkpoint` creates one")
        fresh = Ed25519PrivateKey.generate()
        pem = fresh.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_new_private(path, pem)
    _check_private_mode(path)
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"cannot read the signing key {path}: {err}") from err
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"the signing key {path} is a {type(private).__name__}; recgov signs with Ed25519")
    public = private.public_key()
    key = SigningKey(private_key=private, key_id=key_id_of(public), public_key_pem=_public_pem(public), path=path)
    _write_public(settings.keys_dir, key)
    return key


def installation_public_keys(settings: StoreSettings | None = None) -> dict[str, Ed25519PublicKey]:
    """The public key of every signing key this installation has had: each ``<key_id>.pub.pem`` in its keys folder.

    What a verification of the store trusts its checkpoints to (:func:`audits.verify.verify_store`): the
    ``signing_keys`` table holds the same keys, but anyone who can write the database can add one there and
    sign a rewritten trail with it; the keys folder is the installation's own. Empty where this installation
    never signed (a host that only reads the store).

    Raises
    ------
    ConfigError
        A ``.pub.pem`` file that cannot be read, is not an Ed25519 public key, or holds another key than its
        name says.
    """
    settings = settings or get_settings()
    found: dict[str, Ed25519PublicKey] = {}
    if not settings.keys_dir.is_dir():
        return found
    for path in sorted(settings.keys_dir.glob("*.pub.pem")):
        try:
            key = load_public_key(path.read_bytes())
        except (OSError, DataError) as err:
            raise ConfigError(f"cannot read the public key {path}: {err}") from err
        key_id = key_id_of(key)
        if path.name != f"{key_id}.pub.pem":
            raise ConfigError(f"{path} holds key {key_id}, not the key its name says; a public key file is named <key_id>.pub.pem")
        found[key_id] = key
    return found


def rotate_signing_key(
    path: Path | None = None, *, settings: StoreSettings | None = None
) -> tuple[str | None, SigningKey]:
    """Replace the signing key with a new one; return (old key id or None, new key).

    The old private key file is deleted: a retired key must not sign again. Its
    public key stays in ``<key_id>.pub.pem`` (and in the ``signing_keys`` table
    once it has signed), so its checkpoints remain verifiable.
    """
    settings = settings or get_settings()
    path = Path(path) if path is not None else settings.resolved_signing_key_path()
    old_id = load_signing_key(path, create=False, settings=settings).key_id if path.exists() else None
    path.unlink(missing_ok=True)
    return old_id, load_signing_key(path, settings=settings)


def installation_key(settings: StoreSettings | None = None) -> bytes:
    """The installation key (32 bytes) under which subject ids are looked up.

    From ``RECGOV_INSTALLATION_KEY`` (64 hex digits) if set, else from
    ``$RECGOV_HOME/keys/installation.key``, created on first use. Every process
    that shares a database must use the same key; the store checks this.
    """
    settings = settings or get_settings()
    if settings.installation_key is not None:
        text = settings.installation_key.get_secret_value().strip()
        source = "RECGOV_INSTALLATION_KEY"
    else:
        path = settings.keys_dir / "installation.key"
        if not path.exists():
            _write_new_private(path, secrets.token_hex(32).encode("ascii") + b"\n")
        _check_private_mode(path)
        text = path.read_text().strip()
        source = str(path)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(f"the installation key in {source} must be 64 hex digits")
    return key
