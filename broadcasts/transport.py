"""Sending a send task's messages: one connection per batch, one known outcome per message.

A send task opens a transport once (`with open_transport() as transport:`) and hands it calls of
at most `transport.max_call_size` messages. Each call returns one Outcome per message, whose
status (OutcomeStatus, shared with the pipeline) is one of:

    sent      the server or ESP accepted it (with the ESP's message id when there is one)
    failed    refused for good: SMTP 5xx for the recipient, the ESP rejected that message
    retry     surely NOT sent: connection refused, SMTP 4xx, HTTP 5xx/429 answered before anything
              was accepted, or a message behind one that broke the connection
    unknown   it may or may not have been accepted: the connection dropped after DATA began, or
              no answer came back in time after the request went out. Never sent again.
    released  surely NOT sent, and not tried: the send journal refused to record its start.

Mail errors never raise; the pipeline records whatever comes back.

A call is given the task's send journal (broadcasts/journal.py) and tells it, before each message
(SMTP, one ESP message per request) or each batch request (Postmark) goes out, what is about to
be in flight and what came back from the ones before: a worker killed mid-call then leaves only
what was in flight in doubt. A message whose start the journal refuses is not sent.

The configured mail backend picks the transport:
- Django's SMTP backend: each message goes out with the backend's open connection, one at a
  time, so that each one's acceptance is known. A connection found dead before a message's DATA
  began (an idle timeout between calls) is reopened once per call.
- anymail's Postmark backend: many different messages in one /email/batch request (up to 500).
  anymail's own batch sending copies one body to many recipients, so each message's JSON is built
  by anymail's payload machinery (the same as for a single send) and the list is posted through
  the backend's session; Postmark answers per message, in order.
- any other backend (other anymail ESPs, locmem in tests): one send_messages call per message
  over one connection or HTTP session; the status comes from message.anymail_status.

Every message sent through an anymail ESP backend carries anymail metadata naming its delivery,
{DELIVERY_METADATA: "<delivery id>"}, which the ESP hands back in its tracking webhooks: a bounce
that arrives before the call's outcomes (and ESP message ids) are written still finds its delivery
(tracking/webhooks.py). ESPs whose anymail backend refuses metadata (MailerSend, Postal) send
without it; their events are matched by the ESP message id alone.
"""

from __future__ import annotations

import email.policy
import json
import logging
import re
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from urllib.parse import urljoin

import requests
import urllib3
from anymail.backends.base import AnymailBaseBackend
from anymail.backends.postmark import EmailBackend as PostmarkBackend
from anymail.exceptions import (
    AnymailAPIError,
    AnymailError,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
    AnymailUnsupportedFeature,
)
from anymail.message import AnymailRecipientStatus, AnymailStatus
from django.conf import settings
from django.core import mail
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.core.mail.message import sanitize_address

from convertkit.mail import MESSAGE_TAKES_POLICY

logger = logging.getLogger(__name__)

ERROR_MAX = 500
# The anymail metadata key naming a message's delivery (its id, as text: some ESPs take only text).
DELIVERY_METADATA = "ck_delivery"

SMTP_CALL_SIZE = 20
POSTMARK_BATCH_SIZE = 500
# An ASCII address, bare or as `Name <address>` (the name without <>, commas or line breaks,
# or quoted): its addr-spec is taken as it is. Anything else goes through Django's parser.
_ADDR_SPEC = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(
    rf'(?:(?:[^<>,;:@"\\\r\n]*|"[^"\\\r\n]*")\s*<({_ADDR_SPEC})>|({_ADDR_SPEC}))'
)
# Postmark takes at most 50 MB per batch request and 10 MB per message.
POSTMARK_BATCH_BYTES = 45 * 1024 * 1024
POSTMARK_MESSAGE_BYTES = 10 * 1024 * 1024
# Postmark error codes that say "not now" rather than "never this message": bad token (10),
# maintenance (100), out of credits (405), account pending or suspended (412, 413), rate (429).
POSTMARK_RETRY_CODES = frozenset({10, 100, 405, 412, 413, 429})


class OutcomeStatus(StrEnum):
    """What became of one delivery in a send call or a batch: the transport answers with the
    first five, the pipeline adds the rest (see broadcasts.pipeline.outcomes_record)."""

    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"
    UNKNOWN = "unknown"
    RELEASED = "released"  # back to the queue, not sent, no attempt counted
    SKIPPED = "skipped"  # no longer mailable when its call was about to go out
    CANCELLED = "cancelled"


SENT, FAILED, RETRY, UNKNOWN, RELEASED = (
    OutcomeStatus.SENT,
    OutcomeStatus.FAILED,
    OutcomeStatus.RETRY,
    OutcomeStatus.UNKNOWN,
    OutcomeStatus.RELEASED,
)


@dataclass
class Outcome:
    delivery_id: int
    status: OutcomeStatus
    esp_message_id: str = ""
    error: str = ""


class Journal:
    """What a send call tells before each start: the outcomes so far (`done`) and the deliveries
    about to be in flight (`starting`). The pipeline's journal keeps it in Redis
    (broadcasts/journal.py); this one records nothing and refuses nothing, for calls nobody
    settles after a crash (tests, the benchmark's limit run)."""

    def step_ahead(self, *, done: Sequence[Outcome], starting: Sequence[int]) -> Callable[[], bool]:
        """Sends the record and returns the function that says whether `starting` may go out,
        waiting for the record's answer: call it before anything of theirs can be accepted
        (SMTP: before DATA), so that the record travels while the dialogue goes on."""
        return _allowed

    def step(self, *, done: Sequence[Outcome], starting: Sequence[int]) -> bool:
        """step_ahead, answered at once."""
        return self.step_ahead(done=done, starting=starting)()


def _allowed() -> bool:
    return True


UNJOURNALED = Journal()
# Why a message the journal refused to start was not sent.
JOURNAL_REFUSED = "not sent: the send journal refused it (its claim was settled, or Redis lost it)"


def _error(text: object) -> str:
    return " ".join(str(text).split())[:ERROR_MAX]


def _exception_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return _error(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def mail_connection():
    """A new instance of the configured mail backend: MAILERS["default"] on Django 6.1+, the
    EMAIL_* settings before."""
    mailers = getattr(mail, "mailers", None)
    if mailers is not None:
        return mailers.default
    return mail.get_connection()


def open_transport(*, connection=None) -> Transport:
    """The transport for the configured mail backend (or for `connection`, a backend instance).

    Use it as a context manager: the connection is opened at the first call and closed at the
    end of the block.
    """
    backend = connection if connection is not None else mail_connection()
    if isinstance(backend, SmtpBackend):
        return SmtpTransport(backend)
    if isinstance(backend, PostmarkBackend) and not backend.use_bulk_api:
        return PostmarkBatchTransport(backend)
    return PerMessageTransport(backend)


class Transport:
    """One connection (or HTTP session) for a batch of send calls."""

    max_call_size: int = 1

    def __init__(self, backend) -> None:
        self.backend = backend

    def send_call(
        self, items: list[tuple[int, object]], journal: Journal = UNJOURNALED
    ) -> list[Outcome]:
        """One outcome per (delivery id, message) of `items`, in their order; each start is
        told to `journal` first (see the module docstring)."""
        raise NotImplementedError

    def _open(self, items: list[tuple[int, object]]) -> list[Outcome] | None:
        """Opens the backend's connection or session once; when it cannot be opened, nothing
        was sent: every item is to be retried (returned), else None."""
        if getattr(self, "_opened", False):
            return None
        try:
            self.backend.open()
        except Exception as exc:  # noqa: BLE001 - refused, unreachable, bad credentials
            return [
                Outcome(d, RETRY, error=_error(f"not sent: {_exception_text(exc)}"))
                for d, _m in items
            ]
        self._opened = True
        return None

    def close(self) -> None:
        try:
            self.backend.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not fail the batch
            logger.debug("Closing the mail connection failed", exc_info=True)

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# --- SMTP -------------------------------------------------------------------------------------


class _JournalRefused(Exception):
    """The journal refused a message's start: its DATA is not sent."""


def _smtp_code_status(code: int | None) -> OutcomeStatus:
    return RETRY if code is None or code < 500 else FAILED


class SmtpTransport(Transport):
    """Django's SMTP backend, one message at a time over its open connection.

    smtplib does not say where in the dialogue a connection broke, so the connection's `data`
    method is wrapped to note when a message's DATA begins: a drop before it means the message
    was not sent, a drop after it that nobody knows. The same wrapper waits there for the
    journal's answer to the message's start, and sends no DATA without it.
    """

    max_call_size = SMTP_CALL_SIZE

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self._data_started = False
        self._may_start: Callable[[], bool] = _allowed
        # The envelope sender of each From seen (a broadcast has one).
        self._addresses: dict[str, str] = {}

    def _connect(self) -> str:
        """Opens the connection; "" when it is open, else why not."""
        if self.backend.connection is not None:
            return ""
        try:
            self.backend.open()
        except Exception as exc:  # noqa: BLE001 - refused, timed out, TLS or login failed
            self.close()
            return _exception_text(exc)
        connection = self.backend.connection
        if connection is None:
            return "the SMTP connection could not be opened"
        send_data = connection.data

        def data(msg):
            if not self._may_start():
                raise _JournalRefused
            self._data_started = True
            return send_data(msg)

        connection.data = data
        return ""

    def send_call(
        self, items: list[tuple[int, object]], journal: Journal = UNJOURNALED
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        # A connection found dead (an idle timeout between calls, a 421) is reopened once a call.
        reconnected = False

        def rest_not_sent(start: int, status: OutcomeStatus, why: str) -> None:
            outcomes.extend(Outcome(d, status, error=_error(why)) for d, _m in items[start:])

        index = 0
        while index < len(items):
            problem = self._connect()
            if problem:
                rest_not_sent(index, RETRY, f"not sent: {problem}")
                break
            delivery_id, message = items[index]
            may_start = journal.step_ahead(done=outcomes, starting=[delivery_id])
            outcome, lost = self._send_one(delivery_id, message, may_start)
            if lost:
                self.close()
            if not may_start():
                # DATA was not sent. An outcome settled before it (a refused recipient, a
                # message that cannot be built) stands; nothing more of the call goes out.
                self.close()
                if outcome is not None and outcome.status != RELEASED:
                    outcomes.append(outcome)
                    index += 1
                rest_not_sent(index, RELEASED, JOURNAL_REFUSED)
                break
            if outcome is None:
                # The connection was gone before this message's DATA: it was not sent.
                if not reconnected:
                    reconnected = True
                    continue
                rest_not_sent(index, RETRY, "not sent: the SMTP connection dropped again")
                break
            outcomes.append(outcome)
            index += 1
            if lost and (outcome.status == UNKNOWN or reconnected):
                rest_not_sent(
                    index, RETRY, "not sent: the SMTP connection dropped earlier in the call"
                )
                break
            if lost:
                reconnected = True
        return outcomes

    def _send_one(
        self, delivery_id: int, message, may_start: Callable[[], bool]
    ) -> tuple[Outcome | None, bool]:
        """The outcome and whether the connection is lost; outcome None: lost before DATA.
        `may_start` answers whether the message's DATA may be sent."""
        self._data_started = False
        self._may_start = may_start
        try:
            from_addr, to_addrs, data = self._envelope(message)
        except Exception as exc:  # noqa: BLE001 - an address or a message that cannot be built
            return Outcome(delivery_id, FAILED, error=_exception_text(exc)), False
        if not to_addrs:
            return Outcome(delivery_id, FAILED, error="the message has no recipients"), False
        try:
            self.backend.connection.sendmail(from_addr, to_addrs, data)
        except _JournalRefused:
            # MAIL and RCPT were accepted: the dialogue cannot go on.
            return Outcome(delivery_id, RELEASED, error=JOURNAL_REFUSED), True
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _text in exc.recipients.values()]
            status = RETRY if any(code < 500 for code in codes) else FAILED
            return Outcome(delivery_id, status, error=_error(self._refusals(exc))), False
        except smtplib.SMTPResponseException as exc:
            # Sender refused, DATA refused, HELO refused: the server answered with a code.
            text = exc.smtp_error
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            outcome = Outcome(
                delivery_id,
                _smtp_code_status(exc.smtp_code),
                error=_error(f"{exc.smtp_code} {text}"),
            )
            # 421: the server closes the connection after this answer.
            return outcome, exc.smtp_code == 421
        except smtplib.SMTPNotSupportedError as exc:
            return Outcome(delivery_id, FAILED, error=_exception_text(exc)), False
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            if self._data_started:
                return Outcome(
                    delivery_id,
                    UNKNOWN,
                    error=_error(f"the connection broke after DATA began: {_exception_text(exc)}"),
                ), True
            return None, True
        except Exception as exc:  # noqa: BLE001 - whatever else smtplib may raise
            if self._data_started:
                return Outcome(delivery_id, UNKNOWN, error=_exception_text(exc)), True
            return Outcome(delivery_id, FAILED, error=_exception_text(exc)), False
        return Outcome(delivery_id, SENT), False

    def _envelope(self, message) -> tuple[str, list[str], bytes]:
        """What Django's SMTP backend sends for `message` (its _send): the envelope addresses
        and the bytes. Plain ASCII addresses are read with a regular expression; anything else
        goes through the backend's own checks, which cost far more per address than the
        expression and would be paid for every recipient of a broadcast."""
        from_addr = self._addresses.get(message.from_email)
        if from_addr is None:
            from_addr = self._address(message.from_email, message)
            if len(self._addresses) < 64:
                self._addresses[message.from_email] = from_addr
        to_addrs = [self._address(address, message) for address in message.recipients()]
        if MESSAGE_TAKES_POLICY:
            data = message.message(policy=email.policy.SMTP).as_bytes()
        else:  # Django 5.2
            data = message.message().as_bytes(linesep="\r\n")
        return from_addr, to_addrs, data

    def _address(self, address: str, message) -> str:
        match = _PLAIN_ADDRESS.fullmatch(address)
        if match:
            return match.group(1) or match.group(2)
        prep_address = getattr(self.backend, "prep_address", None)
        if prep_address is not None:  # Django 6.1+
            return prep_address(address)
        return sanitize_address(address, message.encoding or settings.DEFAULT_CHARSET)

    @staticmethod
    def _refusals(exc: smtplib.SMTPRecipientsRefused) -> str:
        parts = []
        for address, (code, text) in exc.recipients.items():
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            parts.append(f"{code} {text} ({address})")
        return "; ".join(parts)


# --- HTTP ESPs --------------------------------------------------------------------------------


def _delivery_name(message, delivery_id: int) -> None:
    """Puts the delivery's id in the message's anymail metadata (kept beside any it has)."""
    metadata = getattr(message, "metadata", None)
    named = {DELIVERY_METADATA: str(delivery_id)}
    message.metadata = {**metadata, **named} if metadata else named


def _takes_metadata(backend) -> bool:
    """Whether the backend is an anymail ESP backend that sends metadata: asked of anymail once
    per transport with a probe message, since some ESPs' backends refuse it (every message would
    then fail) and Django's own backends have no webhooks to hand it back."""
    if not isinstance(backend, AnymailBaseBackend):
        return False
    probe = EmailMessage(from_email="probe@example.com", to=["probe@example.com"])
    _delivery_name(probe, 1)
    try:
        backend.build_message_payload(probe, backend.send_defaults)
    except AnymailUnsupportedFeature:
        return False
    except Exception:  # noqa: BLE001 - not about the metadata: each message will tell its error
        logger.debug("The metadata probe of %r failed", backend, exc_info=True)
    return True


def _request_failure_status(exc: BaseException) -> OutcomeStatus:
    """retry when the request surely never reached the server, else unknown."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RETRY
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(
        exc, requests.exceptions.ReadTimeout
    ):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        # NewConnectionError (refused, no route) is a ConnectTimeoutError in urllib3.
        if isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
            return RETRY
    return UNKNOWN


def _http_status(status_code: int) -> OutcomeStatus:
    """What an HTTP error answer says about the messages of the request."""
    if status_code == 504:
        # A gateway gave up waiting for the ESP, which may have accepted them.
        return UNKNOWN
    if status_code == 429 or status_code >= 500:
        return RETRY
    if status_code in (401, 403):
        # Credentials: nothing was sent, and no message is to blame.
        return RETRY
    return FAILED


class PerMessageTransport(Transport):
    """Any backend: one send_messages call per message, over one connection or HTTP session."""

    max_call_size = 1

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self._opened = False

    @cached_property
    def _names_deliveries(self) -> bool:
        return _takes_metadata(self.backend)

    def send_call(
        self, items: list[tuple[int, object]], journal: Journal = UNJOURNALED
    ) -> list[Outcome]:
        refused = self._open(items)
        if refused:
            return refused
        outcomes: list[Outcome] = []
        for index, (delivery_id, message) in enumerate(items):
            if not journal.step(done=outcomes, starting=[delivery_id]):
                outcomes += [Outcome(d, RELEASED, error=JOURNAL_REFUSED) for d, _m in items[index:]]
                break
            outcomes.append(self._send_one(delivery_id, message))
        return outcomes

    def _send_one(self, delivery_id: int, message) -> Outcome:
        if self._names_deliveries:
            _delivery_name(message, delivery_id)
        try:
            sent = self.backend.send_messages([message])
        except AnymailRecipientsRefused as exc:
            return Outcome(delivery_id, FAILED, error=_exception_text(exc))
        except AnymailRequestsAPIError as exc:
            if exc.status_code is not None:
                return Outcome(delivery_id, _http_status(exc.status_code), error=_exc_first(exc))
            cause = exc.__cause__ or exc
            return Outcome(delivery_id, _request_failure_status(cause), error=_exc_first(exc))
        except AnymailAPIError as exc:
            # An SDK-based ESP (SES): with a status code, judge by it; without, nobody knows.
            status = _http_status(exc.status_code) if exc.status_code else UNKNOWN
            return Outcome(delivery_id, status, error=_exc_first(exc))
        except AnymailError as exc:
            # Unsupported feature, invalid address, serialisation: refused before any request.
            return Outcome(delivery_id, FAILED, error=_exc_first(exc))
        except Exception as exc:  # noqa: BLE001 - some other backend's error: it may have sent it
            return Outcome(delivery_id, UNKNOWN, error=_exception_text(exc))
        status = getattr(message, "anymail_status", None)
        if not sent:
            return Outcome(delivery_id, FAILED, error="the mail backend did not send it")
        if status is None or status.status is None:
            return Outcome(delivery_id, SENT)
        message_id = status.message_id
        if isinstance(message_id, set):
            message_id = ",".join(sorted(str(m) for m in message_id if m is not None))
        if status.status and status.status <= {"rejected", "invalid", "failed"}:
            reasons = sorted(status.status)
            return Outcome(delivery_id, FAILED, error=_error("ESP: " + ", ".join(reasons)))
        return Outcome(
            delivery_id, SENT, esp_message_id="" if message_id is None else str(message_id)
        )


def _exc_first(exc: BaseException) -> str:
    """anymail's error without the whole API response it appends."""
    text = str(exc.args[0]) if exc.args else ""
    status_code = getattr(exc, "status_code", None)
    if status_code is not None:
        text = f"HTTP {status_code} {text}".strip()
    cause = exc.__cause__
    if cause is not None:
        text = f"{text}: {_exception_text(cause)}"
    return _error(f"{type(exc).__name__}: {text}")


class PostmarkBatchTransport(Transport):
    """anymail's Postmark backend, many different messages in one /email/batch request."""

    max_call_size = POSTMARK_BATCH_SIZE

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self._single = PerMessageTransport(backend)
        self._opened = False
        # Larger calls are split into several requests.
        self.batch_bytes = POSTMARK_BATCH_BYTES

    def send_call(
        self, items: list[tuple[int, object]], journal: Journal = UNJOURNALED
    ) -> list[Outcome]:
        refused = self._open(items)
        if refused:
            return refused
        self._single._opened = True
        backend = self.backend
        outcomes: dict[int, Outcome] = {}
        # Once the journal refuses a start, nothing more of the call is sent.
        stopped = False

        def may_start(delivery_ids: list[int]) -> bool:
            nonlocal stopped
            stopped = stopped or not journal.step(
                done=list(outcomes.values()), starting=delivery_ids
            )
            if stopped:
                for delivery_id in delivery_ids:
                    outcomes[delivery_id] = Outcome(delivery_id, RELEASED, error=JOURNAL_REFUSED)
            return not stopped

        # (delivery_id, message, payload, json) of the messages that go in a batch request.
        batch: list[tuple[int, object, object, bytes]] = []
        for delivery_id, message in items:
            message.anymail_status = AnymailStatus()
            _delivery_name(message, delivery_id)
            try:
                if not backend.run_pre_send(message):
                    outcomes[delivery_id] = Outcome(
                        delivery_id, FAILED, error="cancelled by a pre_send handler"
                    )
                    continue
                if not message.recipients():
                    outcomes[delivery_id] = Outcome(
                        delivery_id, FAILED, error="the message has no recipients"
                    )
                    continue
                payload = backend.build_message_payload(message, backend.send_defaults)
                if payload.get_api_endpoint() != "email" or payload.server_token != (
                    backend.server_token
                ):
                    # Templates, merge data or another server: not a plain message, send alone.
                    if may_start([delivery_id]):
                        outcomes[delivery_id] = self._single._send_one(delivery_id, message)
                    continue
                body = payload.serialize_data().encode()
            except AnymailError as exc:
                outcomes[delivery_id] = Outcome(delivery_id, FAILED, error=_exc_first(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a message that cannot be built
                outcomes[delivery_id] = Outcome(delivery_id, FAILED, error=_exception_text(exc))
                continue
            if len(body) > POSTMARK_MESSAGE_BYTES:
                outcomes[delivery_id] = Outcome(
                    delivery_id, FAILED, error="the message is larger than Postmark's 10 MB"
                )
                continue
            batch.append((delivery_id, message, payload, body))
        for request in self._requests(batch):
            if may_start([entry[0] for entry in request]):
                for outcome in self._post(request):
                    outcomes[outcome.delivery_id] = outcome
        return [outcomes[delivery_id] for delivery_id, _message in items]

    def _requests(self, batch: list[tuple]) -> list[list[tuple]]:
        requests_, current, size = [], [], 2
        for entry in batch:
            if current and size + len(entry[3]) + 1 > self.batch_bytes:
                requests_.append(current)
                current, size = [], 2
            current.append(entry)
            size += len(entry[3]) + 1
        if current:
            requests_.append(current)
        return requests_

    def _post(self, request: list[tuple]) -> list[Outcome]:
        backend = self.backend
        first_payload = request[0][2]
        headers = dict(first_payload.headers or {})
        headers["X-Postmark-Server-Token"] = first_payload.server_token
        body = b"[" + b",".join(entry[3] for entry in request) + b"]"
        url = urljoin(backend.api_url, "email/batch")

        def everyone(status: OutcomeStatus, error: str) -> list[Outcome]:
            return [Outcome(entry[0], status, error=_error(error)) for entry in request]

        try:
            response = backend.session.post(
                url, data=body, headers=headers, timeout=backend.timeout
            )
        except requests.RequestException as exc:
            status = _request_failure_status(exc)
            prefix = "not sent" if status == RETRY else "no answer"
            return everyone(status, f"{prefix}: {_exception_text(exc)}")
        except (ValueError, TypeError) as exc:
            # Refused by requests before connecting: a setting of the wrong type (a timeout
            # given as text, say).
            return everyone(RETRY, f"not sent: {_exception_text(exc)}")
        if response.status_code != 200:
            answer = _json_or_none(response)
            if isinstance(answer, dict) and isinstance(answer.get("ErrorCode"), int):
                code = answer["ErrorCode"]
                status = _http_status(response.status_code)
                if response.status_code == 422:
                    status = RETRY if code in POSTMARK_RETRY_CODES else FAILED
                return everyone(
                    status, f"Postmark HTTP {response.status_code}, {code}: {answer.get('Message')}"
                )
            return everyone(
                _http_status(response.status_code),
                f"Postmark HTTP {response.status_code}: {response.text[:200]}",
            )
        answers = _json_or_none(response)
        if not isinstance(answers, list) or len(answers) != len(request):
            # Accepted, but the answer cannot be matched to the messages.
            return everyone(UNKNOWN, f"unreadable Postmark batch answer: {response.text[:200]}")
        return [
            self._outcome(entry, answer, response)
            for entry, answer in zip(request, answers, strict=True)
        ]

    def _outcome(self, entry: tuple, answer: object, response) -> Outcome:
        delivery_id, message, payload, _body = entry
        if not isinstance(answer, dict):
            return Outcome(delivery_id, UNKNOWN, error=_error(f"unreadable answer {answer!r}"))
        code = answer.get("ErrorCode", 0)
        text = str(answer.get("Message", ""))
        recipients = [
            address.addr_spec for address in payload.to_emails + payload.cc_and_bcc_emails
        ]
        if code == 0 and answer.get("MessageID"):
            esp_id = str(answer["MessageID"])
            message.anymail_status.esp_response = response
            message.anymail_status.set_recipient_status(
                {
                    address: AnymailRecipientStatus(message_id=esp_id, status="sent")
                    for address in recipients
                }
            )
            try:
                self.backend.run_post_send(message)
            except Exception:  # noqa: BLE001 - a receiver's bug must not unsend a sent message
                logger.exception("A post_send receiver failed for delivery %s", delivery_id)
            return Outcome(delivery_id, SENT, esp_message_id=esp_id)
        if code == 0:
            return Outcome(delivery_id, UNKNOWN, error=_error(f"no MessageID: {text}"))
        status = RETRY if code in POSTMARK_RETRY_CODES else FAILED
        message.anymail_status.set_recipient_status(
            {
                address: AnymailRecipientStatus(
                    message_id=None, status="rejected" if code == 406 else "failed"
                )
                for address in recipients
            }
        )
        return Outcome(delivery_id, status, error=_error(f"Postmark {code}: {text}"))


def _json_or_none(response) -> object:
    try:
        return json.loads(response.content)
    except ValueError:
        return None
