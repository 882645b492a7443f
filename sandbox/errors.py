"""The ways a Bot API call fails, shaped as Telegram shapes them."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A JSON error answer: ``{"ok": false, "error_code", "description", "parameters"?}``.

    ``outcome`` is the short label the request log keeps for it.
    """

    def __init__(
        self,
        status: int,
        description: str,
        outcome: str = "bad_request",
        parameters: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.outcome = outcome
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        """The JSON object Telegram answers with."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters is not None:
            body["parameters"] = self.parameters
        return body


class GatewayFault(Exception):
    """An injected proxy failure, answered with an HTML page instead of JSON."""

    def __init__(self, status: int, outcome: str) -> None:
        super().__init__(f"{status} ({outcome})")
        self.status = status
        self.outcome = outcome


def bad_request(detail: str) -> ApiError:
    """A 400 whose description starts like Telegram's: ``Bad Request: <detail>``."""
    return ApiError(400, f"Bad Request: {detail}")


def too_many_requests(retry_after: int) -> ApiError:
    """Telegram's 429, with retry_after in whole seconds both in the text and the parameters."""
    return ApiError(
        429,
        f"Too Many Requests: retry after {retry_after}",
        outcome="429",
        parameters={"retry_after": retry_after},
    )


def unauthorized() -> ApiError:
    """A token that is malformed or revoked."""
    return ApiError(401, "Unauthorized", outcome="unauthorized")


def not_found() -> ApiError:
    """An unknown method; Telegram answers it like an unknown page."""
    return ApiError(404, "Not Found", outcome="not_found")


def webhook_conflict() -> ApiError:
    """getUpdates while a webhook is set."""
    return ApiError(
        409,
        "Conflict: can't use getUpdates method while webhook is active; "
        "use deleteWebhook to delete the webhook first",
        outcome="conflict",
    )


def poll_conflict() -> ApiError:
    """The answer of a long poll that a newer getUpdates call replaced."""
    return ApiError(
        409,
        "Conflict: terminated by other getUpdates request; "
        "make sure that only one bot instance is running",
        outcome="conflict",
    )
