"""The two ways a report's body is validated agree (review of s23-ingest): the one pass over
the bytes (``_WholeReport.model_validate_json``) and the row-by-row path (``UsageReportIn``,
each row on its own) accept and refuse the same bodies, keep the same rows with the same
values and set aside the same rows with the same fields."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from tongdao.gateway.usage import PeerUsage, UsageReportIn, parse_report

KEY = base64.b64encode(bytes(range(1, 33))).decode()
GOOD: dict[str, Any] = {
    "tenant_id": "11111111-1111-1111-1111-111111111111",
    "peer_key": KEY,
    "peer_kind": "device",
    "peer_ref": "22222222-2222-2222-2222-222222222222",
    "rx_bytes": 1,
    "tx_bytes": 2,
    "last_handshake": "2026-12-07T08:00:00Z",
    "endpoint": "198.51.100.2:51820",
}
BASE: dict[str, Any] = {
    "seq": 1,
    "period_start": "2026-12-07T08:00:00Z",
    "period_end": "2026-12-07T08:05:00Z",
}
REF = "22222222-2222-2222-2222-222222222222"
VALUES: dict[str, list[Any]] = {
    "rx_bytes": [1.0, 1.5, "1", " 1", 2**63 - 1, 2**63, 2**64, -1, True, None, 1e3, "0x1", []],
    "peer_ref": [
        REF.replace("-", ""),
        "{" + REF + "}",
        "urn:uuid:" + REF,
        REF.upper().replace("2", "A"),
        "２２２２２２２２" + REF[8:],  # fullwidth digits
        REF[:-1] + "Z",
        " " + REF,
        REF + "\n",
        "x" * 10_000,
        None,
        5,
        ["x"],
        {"a": REF},
    ],
    "tenant_id": ["1" * 31 + "A", None, 1, "１" * 8 + GOOD["tenant_id"][8:], ""],
    "peer_key": [KEY.lower(), KEY[:-1], "A" * 43 + "=", None, 7],
    "peer_kind": ["DEVICE", "Device", "pop", "site", "", None, 1],
    "last_handshake": [
        "2026-12-07T08:00:00",
        "2026-12-07",
        1765094400,
        1765094400.5,
        "2026-12-07T08:00:00+08:00",
        "0001-01-01T00:00:00Z",
        None,
    ],
    "endpoint": ["198.51.100.2:0", "[fd00::1]:1", "x" * 100, None, "١٩٨.51.100.2:1", 5],
    "cross_border_rx_bytes": [5, 1.5, "1", None, -1],
    "extra": [1, None],
}
CASES = [(field, i) for field, values in VALUES.items() for i in range(len(values))]


def outcome(parse: Any, raw: bytes) -> tuple[Any, ...]:
    try:
        report = parse(raw)
    except ValidationError as exc:
        return ("refused", sorted((tuple(e["loc"]), e["type"]) for e in exc.errors()))
    rows = [p.model_dump() for p in report.peers]
    return ("accepted", report.seq, report.period_end, rows, report.invalid_rows)


def alone(rows: list[Any]) -> tuple[list[Any], list[int]]:
    """Each row validated on its own from its JSON: the rows kept and the indexes set aside."""
    kept, aside = [], []
    for i, row in enumerate(rows):
        try:
            kept.append(PeerUsage.model_validate_json(json.dumps(row)).model_dump())
        except ValidationError:
            aside.append(i)
    return kept, aside


@pytest.mark.parametrize(("field", "index"), CASES)
def test_both_paths_agree_on_a_row(field: str, index: int) -> None:
    row = {**GOOD, field: VALUES[field][index]}
    bad = {**GOOD, "peer_kind": "nope"}
    for rows in ([row], [GOOD, row], [row, bad], [bad, row, GOOD]):
        raw = json.dumps({**BASE, "peers": rows}, ensure_ascii=False).encode()
        fast = outcome(parse_report, raw)
        assert fast == outcome(UsageReportIn.model_validate_json, raw)
        kept, aside = alone(rows)
        assert fast[0] == "accepted"
        assert fast[3] == kept
        assert [i for i, _fields in fast[4]] == aside


BODIES = [
    b'{"seq":1,"seq":2,"period_start":"2026-12-07T08:00:00Z","period_end":"2026-12-07T08:05:00Z"}',
    b'{"seq":1,"period_start":"2026-12-07T08:00:00Z","period_end":"2026-12-07T08:05:00Z",'
    b'"peers":null}',
    b'{"seq":1.0,"period_start":"2026-12-07T08:00:00Z","period_end":"2026-12-07T08:05:00Z"}',
    b'{"seq":"1","period_start":"2026-12-07T08:00:00Z","period_end":"2026-12-07T08:05:00Z"}',
    b'{"seq":0,"period_start":"2026-12-07T08:00:00Z","period_end":"2026-12-07T08:05:00Z"}',
    b'{"seq":1e400}',
    b"\xff\xfe{}",
    b'{"seq":1,"period_start":"2026-12-07T08:00:00Z","period_end":"\xff"}',
    b"[]",
    b"1",
    b"null",
    b"{",
    json.dumps({**BASE, "peers": [GOOD, GOOD]}).encode(),
    json.dumps({**BASE, "peers": {"0": GOOD}}).encode(),
    json.dumps({**BASE, "peers": [GOOD], "period_end": "2026-12-07T07:00:00Z"}).encode(),
    json.dumps(
        {**BASE, "peers": [{**GOOD, "rx_bytes": "x"}], "period_end": "2026-12-07T07:00:00Z"}
    ).encode(),
    json.dumps({**BASE, "peers": [{**GOOD, "peer_ref": "\ud800"}]}).encode(),
    json.dumps({**BASE, "peers": [GOOD]})
    .replace('"rx_bytes": 1', '"rx_bytes": "x", "rx_bytes": 1')
    .encode(),
    json.dumps({**BASE, "peers": [GOOD]})
    .replace('"rx_bytes": 1', '"rx_bytes": 1, "rx_bytes": "x"')
    .encode(),
    json.dumps({**BASE, "peers": [{**GOOD, "rx_bytes": i} for i in range(2000)] + [7]}).encode(),
]


@pytest.mark.parametrize("index", range(len(BODIES)))
def test_both_paths_agree_on_a_body(index: int) -> None:
    raw = BODIES[index]
    assert outcome(parse_report, raw) == outcome(UsageReportIn.model_validate_json, raw)


UUID_FORMS = [
    REF,
    REF.replace("-", ""),
    "{" + REF + "}",
    "urn:uuid:" + REF,
    REF.upper(),
    "２２２２２２２２" + REF[8:],  # fullwidth digits
    "٢" * 8 + REF[8:],  # Arabic-Indic digits
    " " + REF,
    "2222_2222" + REF[9:],
    "2222222-22222" + REF[13:],  # a hyphen out of place
    "uuid:" + REF,
    "{" + REF,
    REF[:8] + "--" + REF[9:],
    "",
]


@pytest.mark.parametrize("index", range(len(UUID_FORMS)))
def test_ids_are_the_uuids_pydantic_takes(index: int) -> None:
    """peer_ref and tenant_id (validated once per process and cached, since s23-ingest) take
    exactly the texts a ``uuid.UUID`` field took before (and the OpenAPI ``format: uuid``
    says): not Unicode digits, misplaced hyphens or half a brace, which Python's
    ``uuid.UUID()`` takes."""
    text = UUID_FORMS[index]
    try:
        expected: str | None = str(TypeAdapter(uuid.UUID).validate_json(json.dumps(text)))
    except ValidationError:
        expected = None
    row = {**GOOD, "peer_ref": text, "tenant_id": text}
    report = parse_report(json.dumps({**BASE, "peers": [row]}).encode())
    if expected is None:
        assert report.invalid_rows == [(0, "peer_ref, tenant_id")]
    else:
        (peer,) = report.peers
        assert (peer.peer_ref, str(peer.tenant_id)) == (expected, expected)
