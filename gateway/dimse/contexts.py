"""Presentation contexts and role selection, as data (PS3.7 D.3.3.4, PS3.8 9.3.2.2).

Retrieval proposes one context per (SOP Class, transfer syntax) so that the PACS
can send every instance in the syntax it holds it in: a context that lists
several syntaxes lets the peer pick one and transcode, and then the bytes we
cache would not be the bytes the PACS stores.
"""
from __future__ import annotations

from typing import Any, Iterable

from pydicom import uid as U
from pynetdicom import (ALL_TRANSFER_SYNTAXES, DEFAULT_TRANSFER_SYNTAXES,
                        AllStoragePresentationContexts, build_context, build_role)
from pynetdicom import sop_class
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext

S: Any = sop_class  # its SOP Class UIDs are module attributes made at import
MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: context IDs are odd numbers 1-255

UNCOMPRESSED = (U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian)

# What a chest imaging archive holds, and the compressed syntaxes PACSs store (PS3.5 A.4).
RETRIEVE_SYNTAXES: tuple[str, ...] = (
    *UNCOMPRESSED, U.JPEGBaseline8Bit, U.JPEGExtended12Bit, U.JPEGLosslessSV1,
    U.JPEGLSLossless, U.JPEGLSNearLossless, U.JPEG2000Lossless, U.JPEG2000, U.RLELossless,
    U.DeflatedExplicitVRLittleEndian,
)

RETRIEVE_SOP_CLASSES: tuple[str, ...] = (
    S.ComputedRadiographyImageStorage,
    S.DigitalXRayImageStorageForPresentation,
    S.DigitalXRayImageStorageForProcessing,
    S.CTImageStorage,
    S.EnhancedCTImageStorage,
    S.MRImageStorage,
    S.SecondaryCaptureImageStorage,
)

FIND_MODELS = {"P": S.PatientRootQueryRetrieveInformationModelFind,
               "S": S.StudyRootQueryRetrieveInformationModelFind}
GET_MODELS = {"P": S.PatientRootQueryRetrieveInformationModelGet,
              "S": S.StudyRootQueryRetrieveInformationModelGet}
MOVE_MODELS = {"P": S.PatientRootQueryRetrieveInformationModelMove,
               "S": S.StudyRootQueryRetrieveInformationModelMove}
QR_MODELS: tuple[str, ...] = (*FIND_MODELS.values(), *GET_MODELS.values(), *MOVE_MODELS.values())


def _qr_contexts() -> list[PresentationContext]:
    contexts = [build_context(S.Verification, list(UNCOMPRESSED))]
    contexts += [build_context(m, list(UNCOMPRESSED)) for m in QR_MODELS]
    return contexts


Roles = list[SCP_SCU_RoleSelectionNegotiation]


def query_retrieve_requested() -> tuple[list[PresentationContext], Roles]:
    """Contexts + role selection for an SCU association that queries and retrieves:
    Verification, FIND/GET/MOVE in both roots, and storage contexts in which we
    take the SCP role, so C-GET can send us the instances (PS3.4 C.4.3.3)."""
    contexts = _qr_contexts()
    for sop in RETRIEVE_SOP_CLASSES:
        contexts += [build_context(sop, ts) for ts in RETRIEVE_SYNTAXES]
    assert len(contexts) <= MAX_CONTEXTS
    roles = [build_role(sop, scp_role=True) for sop in RETRIEVE_SOP_CLASSES]
    return contexts, roles


def storage_requested(pairs: Iterable[tuple[str, str]]) -> list[PresentationContext]:
    """Contexts to send instances of these (SOP Class, transfer syntax) pairs: each
    pair as-is, plus an uncompressed fallback per SOP Class (we decompress when the
    peer accepts nothing else). At most 128 contexts."""
    contexts: list[PresentationContext] = []
    seen: set[tuple[str, str]] = set()
    classes: list[str] = []
    for sop, ts in pairs:
        if (sop, ts) in seen:
            continue
        seen.add((sop, ts))
        if sop not in classes:
            classes.append(sop)
        if ts not in UNCOMPRESSED:
            contexts.append(build_context(sop, ts))
    contexts += [build_context(sop, list(UNCOMPRESSED)) for sop in classes]
    return contexts[:MAX_CONTEXTS]


def store_pool_requested() -> list[PresentationContext]:
    """Contexts of the pooled C-STORE association (STOW in front of a PACS). No deflate:
    pynetdicom would pick it for an Explicit VR file and re-encode the whole data set."""
    pairs = [(sop, ts) for sop in RETRIEVE_SOP_CLASSES for ts in RETRIEVE_SYNTAXES
             if ts != U.DeflatedExplicitVRLittleEndian]
    return storage_requested(pairs)


def scp_supported() -> list[PresentationContext]:
    """What our Q/R SCP accepts: Verification, FIND/GET/MOVE in both roots, and every
    storage SOP Class in every syntax, with either role (C-STORE in, C-GET out)."""
    contexts = [build_context(str(cx.abstract_syntax), list(DEFAULT_TRANSFER_SYNTAXES))
                for cx in _qr_contexts()]
    for cx in AllStoragePresentationContexts:
        storage = build_context(str(cx.abstract_syntax), list(ALL_TRANSFER_SYNTAXES))
        storage.scu_role, storage.scp_role = True, True
        contexts.append(storage)
    return contexts
