"""The gateway's errors: each maps onto one HTTP status in :mod:`corral.gateway.app`."""

from __future__ import annotations

from corral.errors import CorralError


class GatewayError(CorralError):
    """Base of the gateway's errors; ``status`` is the HTTP status the API answers with."""

    status = 400


class NotFound(GatewayError):
    """No such object, or one the caller may not see (never tells which)."""

    status = 404


class Unauthorized(GatewayError):
    """No token, an unknown, expired or revoked one."""

    status = 401


class Forbidden(GatewayError):
    """The token lacks the scope or the user the role; or no project to charge."""

    status = 403


class OverLimit(GatewayError):
    """Over a project's budget or concurrent-job limit: the message names the limit and what is left."""

    status = 429


class Conflict(GatewayError):
    """The object is not in a state that allows the change (cancelling a finished job)."""

    status = 409


class Unprocessable(GatewayError):
    """A well-formed request naming something this gateway does not take (an unknown backend parameter)."""

    status = 422
