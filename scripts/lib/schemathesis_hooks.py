"""Schemathesis hooks for scripts/schemathesis.sh: what a JSON Schema cannot
state, and a header described before the server implements it.

`validUntil` must lie in the future and at most CREDENTIAL_MAX_VALIDITY_DAYS
(default 3650) days ahead: a window relative to the moment of the request.
core/openapi.json states its form (RFC 3339 UTC, at most three fractional
digits, a real date); here every well-formed `validUntil` that schemathesis
generates, in an issuance body or a batch item, is moved into the window,
keeping its form. Malformed values are left alone: the server must refuse
them, and schemathesis checks that it does.

`Idempotency-Key` is described in the document; a server that does not
implement it yet ignores it, and would accept malformed keys. The script
probes the server, and when it ignores the header (KC_IDEMPOTENCY_KEY_IGNORED=1)
the header is left out of every request (schemathesis then checks each case
as sent).
"""

import datetime
import hashlib
import os
import re

import schemathesis

# The document's pattern for validUntil.
FORM = re.compile(
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,3})?Z$"
)
# Well inside the default 3650 days, starting an hour from now.
WINDOW_SECONDS = 3000 * 86400
ISSUANCE_PATHS = ("/issuance/credentials", "/issuance/credentials/batch")
IDEMPOTENCY_KEY_IGNORED = os.environ.get("KC_IDEMPOTENCY_KEY_IGNORED") == "1"


def within_window(value):
    """`value` moved into the window when it is a well-formed time; else `value`."""
    if not isinstance(value, str) or not FORM.match(value):
        return value
    try:
        datetime.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return value  # a day the month does not have
    # The same generated value always lands on the same offset: a failure replays.
    offset = 3600 + int(hashlib.sha256(value.encode()).hexdigest(), 16) % WINDOW_SECONDS
    moved = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset)
    return moved.strftime("%Y-%m-%dT%H:%M:%S") + value[19:-1] + "Z"


def moved(body):
    """An issuance body, or a batch of them, with its validUntil in the window."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if "validUntil" in body:
        body["validUntil"] = within_window(body["validUntil"])
    if isinstance(body.get("credentials"), list):
        body["credentials"] = [moved(item) for item in body["credentials"]]
    return body


@schemathesis.hook
def map_case(context, case):
    if case.operation.path in ISSUANCE_PATHS:
        case.body = moved(case.body)
        if IDEMPOTENCY_KEY_IGNORED and case.headers:
            case.headers = {k: v for k, v in case.headers.items() if k.lower() != "idempotency-key"}
    return case
