"""Every API error as Kit answers it: {"errors": ["…"]} with the status, whatever raised it."""

from __future__ import annotations

from django.http import Http404, JsonResponse
from ninja.errors import AuthenticationError, HttpError, ValidationError

# Kit's own wordings, so that integrations matching on them keep working.
INVALID_TOKEN = "The access token is invalid"
ACCESS_TOKEN_EXPIRED = "The access token expired"
NOT_FOUND = "Not Found"
RETRY_LATER = "Retry later"
NOT_JSON = "The request body is not valid JSON"


class ApiError(Exception):
    """An answer other than success: `status` with each of `errors`, and `headers`."""

    def __init__(self, status: int, errors: list[str], headers: dict[str, str] | None = None):
        super().__init__(status, errors)
        self.status, self.errors, self.headers = status, errors, headers or {}


def errors_response(status: int, errors: list[str], headers: dict[str, str] | None = None):
    response = JsonResponse({"errors": errors}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _validation_messages(error: ValidationError) -> list[str]:
    """One message per problem pydantic found in a body or a parameter: "first_name: Input
    should be a valid string"; a body that is not JSON at all reads as such."""
    messages = []
    for problem in error.errors:
        location = [str(part) for part in problem.get("loc", ()) if part not in ("body", "query")]
        # ninja names the whole body after the view's parameter: "payload".
        location = [part for part in location if part != "payload"]
        text = problem.get("msg", "is invalid")
        messages.append(f"{'.'.join(location)}: {text}" if location else text)
    return messages or ["The request body is invalid"]


def _http_error(request, exc: HttpError):
    # ninja answers a body it cannot parse with a 400; Kit's malformed bodies are 422s.
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        return errors_response(422, [NOT_JSON])
    return errors_response(exc.status_code, [str(exc)])


def install_handlers(api) -> None:
    """Routes every exception a view can raise to an {"errors": [...]} answer."""
    api.add_exception_handler(
        ApiError, lambda request, exc: errors_response(exc.status, exc.errors, exc.headers)
    )
    api.add_exception_handler(Http404, lambda request, exc: errors_response(404, [NOT_FOUND]))
    api.add_exception_handler(
        AuthenticationError, lambda request, exc: errors_response(401, [INVALID_TOKEN])
    )
    api.add_exception_handler(HttpError, _http_error)
    api.add_exception_handler(
        ValidationError, lambda request, exc: errors_response(422, _validation_messages(exc))
    )
