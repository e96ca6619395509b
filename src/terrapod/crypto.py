"""Encryption of secrets at rest (AES-256-GCM), with the key derived from the master secret.

Ciphertexts are text: ``v1:<base64url(nonce || ciphertext+tag)>``. The associated data binds
a ciphertext to where it is stored (e.g. ``state-version-output:<id>``), so a value copied
into another row does not decrypt.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "v1:"


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("SecretBox needs a 32-byte key")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes, *, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext, context.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, token: str, *, context: str) -> bytes:
        if not token.startswith(_PREFIX):
            raise ValueError("not a Terrapod ciphertext")
        raw = base64.urlsafe_b64decode(token[len(_PREFIX) :])
        return self._aead.decrypt(raw[:12], raw[12:], context.encode())
