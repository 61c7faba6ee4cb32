"""JWTs for the Mercure hub tests (SetHandler sse-mercure), made here the way
a publisher or an application makes them, without a JWT library:

  b64url(bytes)               base64url without padding (RFC 7515)
  Key                         an algorithm and what signs for it: an HMAC
                              secret (bytes), or a private key file whose
                              public half (pub, a PEM file) is what the hub
                              is configured with
  hmac_key(secret, alg)       Key for HS256/HS384/HS512
  gen_key(directory, alg)     Key for RS256/RS512 (RSA 2048) or ES256/ES384
                              (P-256/P-384), generated with the openssl CLI
  mint(key, claims, header)   header.claims.signature: HS* by hmac/hashlib,
                              RS* and ES* by `openssl dgst -<sha> -sign`; an
                              ES signature comes out of openssl as DER and is
                              rewritten as the raw r||s of JWS (RFC 7518 3.4)
  mercure_claims(...)         the claims of the protocol: mercure.publish,
                              .subscribe, .payload, and exp
  unsigned(claims)            an "alg": "none" token, empty signature
  directive(key, name)        the SSEMercure*JWT line that configures key

The hub's own verification is sse_jwt.c (libjwt); tests/test_mercure_php.py
checks these tokens against PyJWT as a second reader before any hub sees them.
"""
import base64
import hashlib
import hmac
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# JWS name -> (hash for openssl dgst / hashlib, raw size of r and s for ES).
_ALGS = {
    "HS256": ("sha256", None), "HS384": ("sha384", None), "HS512": ("sha512", None),
    "RS256": ("sha256", None), "RS512": ("sha512", None),
    "ES256": ("sha256", 32), "ES384": ("sha384", 48),
}
_CURVES = {"ES256": "P-256", "ES384": "P-384"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Key:
    alg: str
    secret: bytes = None        # HS*
    priv: Path = None           # RS*, ES*: private key (PEM), signs
    pub: Path = None            # RS*, ES*: public key (PEM), the hub's

    def config_arg(self):
        """The key argument of SSEMercure*JWT: the secret or the PEM path."""
        if self.secret is not None:
            return self.secret.decode()
        return str(self.pub)


def hmac_key(secret, alg="HS256") -> Key:
    assert alg.startswith("HS") and alg in _ALGS, alg
    return Key(alg, secret=secret.encode() if isinstance(secret, str) else secret)


def _openssl(*args, data=None):
    p = subprocess.run(["openssl", *args], input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, f"openssl {' '.join(args)}: {p.stderr.decode(errors='replace')}"
    return p.stdout


def gen_key(directory, alg, name=None) -> Key:
    """A fresh RSA (2048 bits) or EC key pair for alg, as PEM files in
    directory (readable by httpd's children: the public one is the hub's)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    name = name or alg.lower()
    priv, pub = d / f"{name}.key.pem", d / f"{name}.pub.pem"
    if alg.startswith("RS"):
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", str(priv))
    elif alg.startswith("ES"):
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{_CURVES[alg]}",
                 "-out", str(priv))
    else:
        raise ValueError(f"gen_key: {alg} has no key pair")
    _openssl("pkey", "-in", str(priv), "-pubout", "-out", str(pub))
    pub.chmod(0o644)
    return Key(alg, priv=priv, pub=pub)


def _der_len(der, i):
    """(length, index after it) of the DER length at der[i]."""
    n = der[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7F
    return int.from_bytes(der[i + 1:i + 1 + k], "big"), i + 1 + k


def der_to_raw(der: bytes, size: int) -> bytes:
    """An ECDSA-Sig-Value (SEQUENCE of INTEGER r, INTEGER s) as JWS wants
    it: r and s big-endian, each left-padded to size bytes."""
    assert der[0] == 0x30, der.hex()
    _, i = _der_len(der, 1)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02, der.hex()
        n, i = _der_len(der, i + 1)
        v = der[i:i + n].lstrip(b"\0")     # a leading 0 keeps a DER INTEGER positive
        assert len(v) <= size, (len(v), size)
        out += v.rjust(size, b"\0")
        i += n
    assert i == len(der), der.hex()
    return out


def sign(key: Key, signing_input: bytes) -> bytes:
    digest, es_size = _ALGS[key.alg]
    if key.secret is not None:
        return hmac.new(key.secret, signing_input, getattr(hashlib, digest)).digest()
    sig = _openssl("dgst", f"-{digest}", "-sign", str(key.priv), data=signing_input)
    return der_to_raw(sig, es_size) if es_size else sig


def mint(key: Key, claims: dict, header: dict = None) -> str:
    """A token for claims signed with key. header: members to add to (or,
    for "alg" and "typ", replace in) {"alg": key.alg, "typ": "JWT"}."""
    h = {"alg": key.alg, "typ": "JWT"}
    h.update(header or {})
    signing_input = f"{b64url(_json(h))}.{b64url(_json(claims))}".encode()
    return signing_input.decode() + "." + b64url(sign(key, signing_input))


def unsigned(claims: dict) -> str:
    """alg none: what an attacker without any key sends."""
    return f"{b64url(_json({'alg': 'none', 'typ': 'JWT'}))}.{b64url(_json(claims))}."


def mercure_claims(publish=None, subscribe=None, payload=None, exp=None, ttl=None, **extra):
    """{"mercure": {...}} with the lists given (None: left out), and exp
    (absolute) or ttl (seconds from now)."""
    m = {}
    if publish is not None:
        m["publish"] = list(publish)
    if subscribe is not None:
        m["subscribe"] = list(subscribe)
    if payload is not None:
        m["payload"] = payload
    claims = {"mercure": m}
    if ttl is not None:
        exp = int(time.time()) + ttl
    if exp is not None:
        claims["exp"] = exp
    claims.update(extra)
    return claims


def directive(key: Key, name="SSEMercurePublisherJWT"):
    """The configuration line for key, e.g. SSEMercurePublisherJWT "s3cret" HS256."""
    return f'{name} "{key.config_arg()}" {key.alg}'
