"""Ed25519 signatures over audit chain links: the signature is over the link's text ("sha256:…")."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyError(ValueError):
    """The key file is missing, unreadable or not an Ed25519 key; the message says which."""


class LinkSigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def from_file(cls, path: Path) -> LinkSigner:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as error:
            raise SigningKeyError(f"cannot read signing key {path}: {error.strerror}") from None
        except (ValueError, TypeError) as error:
            raise SigningKeyError(f"signing key {path} is not an unencrypted PEM private key: {error}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"signing key {path} must be an Ed25519 key (agentledger keygen makes one)")
        return cls(key)

    def sign(self, link: str) -> str:
        return base64.b64encode(self._key.sign(link.encode())).decode("ascii")

    def public_key_pem(self) -> str:
        return public_key_pem(self._key.public_key())


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def verify_signature(public_key_pem_text: str, link: str, signature: str) -> bool:
    key = serialization.load_pem_public_key(public_key_pem_text.encode())
    if not isinstance(key, Ed25519PublicKey):
        return False
    try:
        key.verify(base64.b64decode(signature), link.encode())
    except (InvalidSignature, ValueError):
        return False
    return True


def generate_key_pair(private_path: Path) -> str:
    """Writes a new private key (mode 0600) and returns the public key PEM."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.touch(mode=0o600, exist_ok=False)
    private_path.write_bytes(pem)
    return public_key_pem(key.public_key())
