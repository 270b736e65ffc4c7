"""bench/compare.py rows for the gateway in front of Orthanc over DIMSE: cold series
metadata and retrieve against a bare pynetdicom C-GET of the same series, then warm."""
from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

from bench.benchlib import Client, curl_mbps
from gateway.dimse.sockets import HANDLERS

if TYPE_CHECKING:
    from bench.compare import Row
    from bench.compare_setup import Bed, Study

AS_STORED = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
JSON = {"Accept": "application/dicom+json"}


def bare_cget(bed: "Bed", study: "Study") -> float:
    """Seconds for pynetdicom alone to C-GET one series (TCP_NODELAY on, datasets not decoded)."""
    ae = AE(ae_title="BENCH")
    ae.maximum_pdu_size = 0
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid, role.scu_role, role.scp_role = CTImageStorage, False, True
    got = []
    handlers = [*HANDLERS, (evt.EVT_C_STORE, lambda event: got.append(1) or 0x0000)]
    ident = Dataset()
    ident.QueryRetrieveLevel = "SERIES"
    ident.StudyInstanceUID, ident.SeriesInstanceUID = study.study, study.series
    t0 = time.perf_counter()
    assoc = ae.associate("127.0.0.1", bed.orthanc.dicom_port, ae_title=bed.orthanc.aet,
                         ext_neg=[role], evt_handlers=handlers)
    assert assoc.is_established
    for _status, _ds in assoc.send_c_get(ident, StudyRootQueryRetrieveInformationModelGet):
        pass
    assoc.release()
    seconds = time.perf_counter() - t0
    assert len(got) == len(study.instances), (len(got), len(study.instances))
    return seconds


def remote_rows(bed: "Bed") -> list["Row"]:
    from bench.compare import Row
    from bench.compare_setup import start_gateway
    front = start_gateway(bed.work / "front-cache", bed.logs, workers=None,
                          env={"GATEWAY_PACS": bed.orthanc.address})
    try:
        half = max(1, len(bed.cts) // 2)
        meta = _cold(bed, front.url, bed.cts[:half], metadata=True)
        retr = _cold(bed, front.url, bed.cts[half:] or bed.cts[:1], metadata=False)
    finally:
        front.stop()
    rows = []
    for name, (cold, bare, warm) in (("series metadata", meta), ("series retrieve", retr)):
        rows.append(Row(f"PACS front: cold {name} vs bare pynetdicom C-GET", "p50 ms",
                        statistics.median(cold), statistics.median(bare), "<= 1.2x"))
        rows.append(Row(f"PACS front: warm {name} (cache)", "p50 ms", statistics.median(warm),
                        None))
    return rows


def _cold(bed: "Bed", url: str, studies: list["Study"], *, metadata: bool):
    cold, bare, warm = [], [], []
    client = Client(url + "/dicomweb")
    for study in studies:
        bare.append(bare_cget(bed, study) * 1000)
        rel = f"/studies/{study.study}/series/{study.series}"
        for out in (cold, warm):
            if metadata:
                out.append(client.timed(rel + "/metadata", JSON)[0])
            else:
                out.append(curl_mbps(url + "/dicomweb" + rel, AS_STORED)[0])
    client.close()
    return cold, bare, warm
