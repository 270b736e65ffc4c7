"""Fuzz C-FIND identifier conversion, SCP side (PS3.4 C.4.1.1.3, C.4.1.2.3).

Input: byte 0 bit 0 says Implicit (1) or Explicit VR Little Endian, bit 1 the model
(Patient or Study Root); the rest is the identifier as it arrives in a P-DATA PDU,
decoded as pynetdicom decodes it. Identifiers pydicom cannot decode are skipped (the
handler answers those with a failure status). Contract: ``query_from_identifier`` gives a
Query the archive can plan, or raises InvalidQuery; ``answer`` gives exactly the
requested keys (plus the character set and level) in a dataset that encodes.
"""
from __future__ import annotations

import io
import logging
import warnings

from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom.dsutils import decode

from tests.fuzz._harness import instrumented, ints, main

with instrumented(__name__):
    from gateway.archive.local import matching
    from gateway.archive.errors import InvalidQuery
    from gateway.dimse.identifiers import answer, query_from_identifier

ALWAYS = {0x00080005, 0x00080052}  # SpecificCharacterSet, QueryRetrieveLevel
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


def decoded(raw: bytes, implicit: bool):
    """The identifier with every element converted, or None if pydicom cannot."""
    try:
        ds = decode(io.BytesIO(raw), implicit, True)
        for elem in ds.iterall():
            _ = elem.value
        match = ds.to_json_dict(bulk_data_threshold=1 << 30)
    except Exception:  # noqa: BLE001 - undecodable: pynetdicom/pydicom's business, not ours
        return None
    return ds, match


def check(data: bytes) -> None:
    (flags,), raw = ints(data, 1)
    implicit = bool(flags & 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = decoded(raw, implicit)
        if found is None:
            return
        ds, match = found
        try:
            query, tags = query_from_identifier(ds, "P" if flags & 2 else "S")
        except InvalidQuery as exc:
            assert exc.attribute, exc
            return
        try:
            matching.plan(query)
        except InvalidQuery as exc:
            assert exc.attribute, exc
        out = answer(match, tags, query.level)
        assert {int(t) for t in out.keys()} == set(tags) | ALWAYS, (sorted(out.keys()), tags)
        fp = DicomBytesIO()  # what pynetdicom's encode() does, without hiding the exception
        fp.is_implicit_VR, fp.is_little_endian = implicit, True
        write_dataset(fp, out)


if __name__ == "__main__":
    main(check)
