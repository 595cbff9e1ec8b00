"""Real Ed25519 SSH key pairs for the mocks, derived from a name: deterministic, as a key kept in
Pulumi's state is (pulumi-tls makes it once), so two evaluations of one stack agree.

The public key is computed as RFC 8032 (section 5.1.5) says, the private key is written in
OpenSSH's own format (PROTOCOL.key: "openssh-key-v1", no cipher, no KDF). `ssh-keygen -y` reads it
back to the same public key (tests/test_harness_keys.py), and sshd and OpenSSH's client use the
pair in the VM tests. Test keys only: the seed is public by construction."""

from __future__ import annotations

import base64
import hashlib
import struct

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_Y = 4 * pow(5, _P - 2, _P) % _P


def _x(y: int) -> int:
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    return _P - x if x & 1 else x


_B = (_x(_Y), _Y, 1, _x(_Y) * _Y % _P)  # the base point, extended coordinates


def _add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa, bb = (y1 - x1) * (y2 - x2) % _P, (y1 + x1) * (y2 + x2) % _P
    c, dd = 2 * t1 * t2 * _D % _P, 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - c, dd + c, bb + aa
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _public(seed: bytes) -> bytes:
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    q, point = (0, 1, 1, 0), _B
    while a:
        if a & 1:
            q = _add(q, point)
        point, a = _add(point, point), a >> 1
    zi = pow(q[2], _P - 2, _P)
    x, y = q[0] * zi % _P, q[1] * zi % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _s(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def ed25519_pair(name: str, comment: str = "") -> tuple[str, str]:
    """(private key in OpenSSH format, public key line), both ending in a newline as pulumi-tls's."""
    seed = hashlib.sha256(f"socle-test-key:{name}".encode()).digest()
    pub = _public(seed)
    blob = _s(b"ssh-ed25519") + _s(pub)
    check = seed[:4]
    private = check + check + _s(b"ssh-ed25519") + _s(pub) + _s(seed + pub) + _s(comment.encode())
    private += bytes(range(1, 1 + (-len(private)) % 8))
    body = b"openssh-key-v1\0" + _s(b"none") + _s(b"none") + _s(b"") + struct.pack(">I", 1) + _s(blob) + _s(private)
    b64 = base64.b64encode(body).decode()
    pem = "\n".join(b64[i:i + 70] for i in range(0, len(b64), 70))
    return (f"-----BEGIN OPENSSH PRIVATE KEY-----\n{pem}\n-----END OPENSSH PRIVATE KEY-----\n",
            f"ssh-ed25519 {base64.b64encode(blob).decode()}\n")


_RSA: dict[str, tuple[str, str]] = {}


def rsa_pair(name: str, bits: int = 2048) -> tuple[str, str]:
    """A real RSA key pair (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM) for the mocks' RSA
    PrivateKey (DKIM). Made once per name and process: RSA generation cannot be seeded, so two
    processes disagree, which only tests that use RSA keys see."""
    if name not in _RSA:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        _RSA[name] = (
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    return _RSA[name]
