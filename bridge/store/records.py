"""How a snapshot stores one last-known record: msgpack, deflated against a dictionary of d6's field names.

Every debtor repeats the same twenty-odd field names, which are half of its msgpack bytes. A preset
deflate dictionary (`zdict`) holding those names (as msgpack strings) lets each record be compressed on its
own: the names shrink to a few bits, and a record can still be read or written alone. Only created,
changed and removed records are ever packed or unpacked in a poll, so the CPU cost stays small.

Format: `b"z"` + raw deflate of the msgpack map. A value without the marker is plain msgpack (a map never
starts with the byte `z`), so both forms can be read. The dictionary must never change once records were
written with it; a new one would need a new marker.
"""

from __future__ import annotations

import zlib
from typing import Any, Final

import msgspec

MARKER: Final = b"z"
WINDOW_BITS: Final = 12  # a 4 KB window holds the dictionary and a record; a small one is cheap to set up
_PACK: Final = msgspec.msgpack.Encoder()
_UNPACK: Final = msgspec.msgpack.Decoder(dict[str, Any])

_FIELDS: Final = (  # noqa: SIM905 - a run of names reads better than forty quoted strings
    # learners (d6 "Upgrading to v2") and client integrations
    "learner_id first_name last_name gender grade debtor_code parent1_id parent2_id accountable_person_id "
    "school_id school_name api_type_id api_type activated_by_integrator school_login_id admin_email_address "
    # accountable persons and their parents
    "title full_names mobile_calling_code mobile_number work_tel_number home_tel_number email_address "
    "residential_address postal_address home_language nationality id_number passport_number employer "
    "employer_address account_closing_date account_start_date parent_id learners parents"
).split()
ZDICT: Final = b"".join(_PACK.encode(name) for name in _FIELDS) + _PACK.encode(
    {
        "gender": "F",
        "mobile_calling_code": "27",
        "nationality": "South Africa",
        "activated_by_integrator": "Yes",
    }
)


def pack_record(record: dict[str, Any]) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -WINDOW_BITS, 8, zlib.Z_DEFAULT_STRATEGY, ZDICT)
    return MARKER + compressor.compress(_PACK.encode(record)) + compressor.flush()


def unpack_record(data: bytes) -> dict[str, Any]:
    if data[:1] != MARKER:
        return _UNPACK.decode(data)
    decompressor = zlib.decompressobj(-WINDOW_BITS, ZDICT)
    return _UNPACK.decode(decompressor.decompress(data[1:]) + decompressor.flush())
