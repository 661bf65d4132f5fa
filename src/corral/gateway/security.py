"""Per-token rate limits and OIDC bearer tokens validated locally against a JWKS file.

:class:`RateLimiter` is a token bucket per API token (by its SHA-256): ``rate`` requests a second
on average, bursts of ``burst``; over it, 429 with ``Retry-After``. It lives in the gateway's
process (one per ``serve``). :class:`OidcVerifier` checks a JWT's signature against the keys of a
JWKS file (no network call), its issuer, audience and expiry, and refuses any algorithm outside
the allowlist (``none`` and HMAC are never accepted: a public key must not double as a secret).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.errors import ConfigError

from .store import GatewayError, Unauthorized

ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


class RateLimited(GatewayError):
    """Over the per-token request rate."""

    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiter:
    """A token bucket per key: ``rate`` a second, at most ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ConfigError(f"rate limit {rate}/s with burst {burst}: the rate must be > 0 and the burst >= 1")
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> None:
        """Count one request of ``key``; RateLimited (429) if its bucket is empty."""
        now = time.monotonic()
        with self._lock:
            level, last = self._buckets.get(key, (float(self.burst), now))
            level = min(float(self.burst), level + (now - last) * self.rate)
            if level < 1.0:
                self._buckets[key] = (level, now)
                wait = (1.0 - level) / self.rate
                raise RateLimited(f"rate limit of {self.rate:g} requests/s per token (bursts of {self.burst}) "
                                  f"reached: retry in {wait:.1f} s", wait)
            self._buckets[key] = (level - 1.0, now)


@dataclass(frozen=True)
class OidcSettings:
    """Where the keys are and what a token must say."""

    jwks_file: Path
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")


class OidcVerifier:
    """Validates OIDC access tokens (JWTs) locally; the user is the token's ``sub``."""

    def __init__(self, settings: OidcSettings) -> None:
        import jwt

        bad = sorted(set(settings.algorithms) - ASYMMETRIC)
        if bad or not settings.algorithms:
            raise ConfigError(f"OIDC algorithms {', '.join(bad) or '(none)'} are not allowed; choose among "
                              f"{', '.join(sorted(ASYMMETRIC))}")
        try:
            data = json.loads(settings.jwks_file.read_text())
            self.keys = jwt.PyJWKSet.from_dict(data)
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ConfigError(f"OIDC JWKS file {settings.jwks_file}: {exc}; give a JSON Web Key Set file") from exc
        self.settings = settings

    def subject(self, token: str) -> tuple[str, frozenset[str]]:
        """The token's ``sub`` and the scopes of its ``scope`` claim; Unauthorized (401) naming what
        is wrong with it otherwise."""
        import jwt

        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in s.algorithms:
                raise Unauthorized(f"token algorithm {header.get('alg')!r} is not allowed")
            key = self._key(header.get("kid"))
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=list(s.algorithms), audience=s.audience,
                                                issuer=s.issuer, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid OIDC token: {exc}") from None
        scopes = frozenset(str(claims.get("scope", "")).split())
        return str(claims["sub"]), scopes

    def _key(self, kid: Any) -> Any:
        for jwk in self.keys.keys:
            if kid is None or jwk.key_id == kid:
                return jwk.key
        raise Unauthorized(f"no key {kid!r} in the gateway's JWKS")
