"""Standard Webhooks verification: a pure function, never an exception other than its own."""

from __future__ import annotations

import base64

import pytest

from webhooks.signing import SignatureError, decode_secret, sign, verify

KEY = b"k" * 32
OTHER = b"o" * 32
NOW = 1_790_000_000
BODY = b'{"object": "Contact", "ids": ["0035e00000AbCdEAAV"]}'


def headers(msg_id: str = "msg_1", ts: int = NOW, signature: str | None = None) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature if signature is not None else sign(KEY, msg_id, ts, BODY),
    }


def test_valid_signature_returns_the_message_id() -> None:
    assert verify([KEY], headers(), BODY, now=NOW) == "msg_1"


def test_spec_example_vector() -> None:
    # The example in the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, ts = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(decode_secret(secret), msg_id, ts, body) == expected
    got = verify([decode_secret(secret)], headers(msg_id, ts, expected), body, now=ts)
    assert got == msg_id


def test_any_of_several_signatures_may_match_key_rotation() -> None:
    signature = f"v1,{base64.b64encode(b'x' * 32).decode()} {sign(KEY, 'msg_1', NOW, BODY)}"
    assert verify([KEY], headers(signature=signature), BODY, now=NOW) == "msg_1"
    assert verify([OTHER, KEY], headers(), BODY, now=NOW) == "msg_1"


def test_unknown_schemes_are_skipped() -> None:
    signature = f"v1a,c29tZXRoaW5n {sign(KEY, 'msg_1', NOW, BODY)}"
    assert verify([KEY], headers(signature=signature), BODY, now=NOW) == "msg_1"


@pytest.mark.parametrize(
    ("changed", "status", "reason"),
    [
        ({"webhook-signature": sign(OTHER, "msg_1", NOW, BODY)}, 401, "no signature matches"),
        ({"webhook-id": "msg_2"}, 401, "no signature matches"),  # id swapped under a signature
        ({"webhook-timestamp": str(NOW - 301)}, 401, "too old"),
        ({"webhook-timestamp": str(NOW + 301)}, 401, "in the future"),
        ({"webhook-signature": "v1a,abc"}, 401, "no v1 signature"),
        ({"webhook-id": ""}, 400, "missing webhook-id"),
        ({"webhook-id": "has space"}, 400, "printable ASCII"),
        ({"webhook-id": "x" * 201}, 400, "printable ASCII"),
        ({"webhook-timestamp": ""}, 400, "missing webhook-timestamp"),
        ({"webhook-timestamp": "yesterday"}, 400, "Unix seconds"),
        ({"webhook-timestamp": "-5"}, 400, "Unix seconds"),
        ({"webhook-timestamp": "9" * 40}, 400, "Unix seconds"),
        ({"webhook-signature": ""}, 400, "missing webhook-signature"),
        ({"webhook-signature": "nocomma"}, 400, "v1,<base64>"),
        ({"webhook-signature": "v1,%%%not-base64%%%"}, 400, "not base64"),
        ({"webhook-signature": "v1," + "A" * 5000}, 400, "too long"),
        # A trailing newline or a non-ASCII digit is malformed, not "close enough".
        ({"webhook-id": "msg_1\n"}, 400, "printable ASCII"),
        ({"webhook-timestamp": f"{NOW}\n"}, 400, "Unix seconds"),
        (
            {"webhook-timestamp": str(NOW).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))},
            400,
            "Unix seconds",
        ),
        ({"webhook-timestamp": NOW}, 400, "not text"),
        ({"webhook-signature": [sign(KEY, "msg_1", NOW, BODY)]}, 400, "not text"),
    ],
)
def test_refusals(changed: dict[str, object], status: int, reason: str) -> None:
    given = {**headers(), **changed}
    with pytest.raises(SignatureError) as info:
        verify([KEY], given, BODY, now=NOW)
    assert info.value.status == status
    assert reason in info.value.reason


def test_tampered_body_is_refused() -> None:
    with pytest.raises(SignatureError) as info:
        verify([KEY], headers(), BODY + b" ", now=NOW)
    assert info.value.status == 401


def test_edges_of_the_tolerance_are_accepted() -> None:
    for ts in (NOW - 300, NOW + 300):
        assert verify([KEY], headers(ts=ts), BODY, now=NOW) == "msg_1"


def test_missing_headers_entirely() -> None:
    with pytest.raises(SignatureError) as info:
        verify([KEY], {}, BODY, now=NOW)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "secret", ["nope", "whsec_", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_bad_secrets(secret: str) -> None:
    with pytest.raises(ValueError):
        decode_secret(secret)
