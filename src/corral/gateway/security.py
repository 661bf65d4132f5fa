"""Per-token rate limits, a short-lived cache of token lookups, and OIDC bearer tokens validated
locally against a JWKS file.

:class:`RateLimiter` is a token bucket per API token (by its SHA-256): ``rate`` requests a second
on average, bursts of ``burst``; over it, 429 with ``Retry-After``. It lives in the gateway's
process (one per ``serve``). :class:`OidcVerifier` checks a JWT's signature against the keys of a
JWKS file (no network call), its issuer, audience and expiry, and refuses any algorithm outside
the allowlist (``none`` and HMAC are never accepted: a public key must not double as a secret).
:class:`TokenCache` keeps the user of a recently checked gateway token for a few seconds, so that
status polling costs no token query per request (bench/gateway.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral.errors import ConfigError

from .store import GatewayError, Principal, Unauthorized

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


TOKEN_CACHE_SECONDS = 5.0
"""How long a checked gateway token is trusted without a query: a token revoked by another process
(``corral gateway token revoke``, another gateway on the same database) is refused at most this
long after; one revoked through this gateway's store is refused at once."""


class TokenCache:
    """The callers of recently checked tokens, by the token's SHA-256 (never the token): each kept
    ``ttl`` seconds, and never past the token's expiry. :meth:`clear` forgets them all (the store
    calls it when a token is revoked or a user's role changes); a lookup that began before a clear is not
    kept, so a revocation through this process takes effect at once. Unknown, revoked and expired
    tokens are never kept. At most ``max_entries`` at once (all are dropped when full)."""

    def __init__(self, ttl: float = TOKEN_CACHE_SECONDS, max_entries: int = 10_000) -> None:
        if ttl < 0 or max_entries < 1:
            raise ConfigError(f"token cache of {ttl} s and {max_entries} entries: the time must be >= 0 "
                              "and the size >= 1")
        self.ttl, self.max_entries = ttl, max_entries
        self._entries: dict[str, tuple[Principal, float, float]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def principal(self, key: str, load: Callable[[], tuple[Principal, datetime | None]]) -> Principal:
        """The caller of the token hashed to ``key``: kept, or ``load()`` (which checks the token,
        raising Unauthorized, and returns its caller and expiry, naive UTC or None)."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            generation = self._generation
        if entry is not None and now < entry[1] and time.time() < entry[2]:
            return entry[0]
        who, expires = load()
        until = float("inf") if expires is None else expires.replace(tzinfo=UTC).timestamp()
        with self._lock:
            if generation == self._generation and self.ttl > 0:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (who, now + self.ttl, until)
        return who

    def clear(self) -> None:
        """Forget every kept token (and any lookup under way)."""
        with self._lock:
            self._entries.clear()
            self._generation += 1


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
