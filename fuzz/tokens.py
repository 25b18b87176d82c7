"""Tokens: found in a handshake (Authorization header, subprotocol, query), then verified.

Verification gives a user or raises TokenError (a 401/403), nothing else:
for the fuzzer's own strings, and for claims the fuzzer chooses signed with
the project's key (the fuzzer cannot forge a signature, so the claims past
it are reached by signing them here: a leaked key is out of scope, but an
issuer's odd claims are not).
"""

from __future__ import annotations

import json

import atheris

from . import _django

_django.setup()

from django.core import signing

from django_ws.tokens import TokenError, token_from_request, verify_token


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    header = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    subprotocol = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    query = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    meta = {"headers": [("Authorization", header)], "subprotocols": [subprotocol], "query": query}
    found = token_from_request(meta)
    scope = fdp.PickValueInList([None, "chat", ""])
    candidates = [found] if found else []
    raw_claims = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    try:
        claims = json.loads(raw_claims)
    except ValueError:
        claims = raw_claims
    candidates.append(signing.Signer(salt="django_ws.tokens", sep="~").sign_object(claims))
    for token in candidates:
        try:
            user, got = verify_token(token, scope=scope)
        except TokenError as exc:
            assert exc.status in (401, 403), exc.status
            continue
        assert user.is_active and isinstance(got, dict), (user, got)
