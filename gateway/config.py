"""Typed, layered settings: defaults < TOML file < ``GATEWAY_*`` environment.

Every key is documented beside its default (the ``doc`` metadata); the README's
settings table is checked against this module by a test, so the two never drift.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "GATEWAY_"
MiB, GiB = 1024**2, 1024**3


class SettingsError(ValueError):
    """A setting has a value of the wrong type or outside its allowed set."""


def _doc(text: str, choices: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"doc": text, "choices": choices}


@dataclass(frozen=True)
class Settings:
    """Gateway configuration. Field names are the lower-case setting keys."""

    data_dir: Path = field(default=Path("./var"), metadata=_doc(
        "Files, index, viewer build and temporary uploads live here."))
    database_url: str = field(default="", metadata=_doc(
        "Index database. Empty means `sqlite:///{DATA_DIR}/index.sqlite`; "
        "`postgresql://user@host/db` when several gateway processes share one archive "
        "(each connection attempt gives up after 5 s unless the URL sets `?connect_timeout=N`)."))
    http_bind: str = field(default="127.0.0.1:8080", metadata=_doc(
        "HOST:PORT gunicorn listens on."))
    public_url: str = field(default="http://127.0.0.1:8080", metadata=_doc(
        "Base for absolute links (BulkDataURI, RetrieveURL, FHIR links, Endpoint.address). "
        "When unset and HTTP_BIND is set, `http://{HTTP_BIND}`."))
    trust_proxy: bool = field(default=False, metadata=_doc(
        "Honour `X-Forwarded-Proto/Host/Prefix` from a reverse proxy when building links."))
    ae_title: str = field(default="TCIAGW", metadata=_doc(
        "Our DICOM AE title (SCP and SCU)."))
    dimse_bind: str = field(default="127.0.0.1:11112", metadata=_doc(
        "HOST:PORT of the DIMSE SCP."))
    pacs: str = field(default="", metadata=_doc(
        "`AET@host:port` of a PACS to front. Empty: serve the embedded archive."))
    pacs_retrieve: str = field(default="c-get", metadata=_doc(
        "How to fetch from the PACS.", ("c-get", "c-move")))
    known_aes: str = field(default="", metadata=_doc(
        "`AET@host:port,...`: C-MOVE destinations our SCP may send to."))
    dimse_allowed_aes: str = field(default="", metadata=_doc(
        "Calling AE titles the DIMSE SCP accepts, comma-separated; empty accepts any."))
    dimse_max_associations: int = field(default=16, metadata=_doc(
        "Concurrent associations the DIMSE SCP accepts."))
    dimse_timeout: float = field(default=60.0, metadata=_doc(
        "Seconds the SCP waits for a peer's next DIMSE message."))
    pacs_move_bind: str = field(default="127.0.0.1:11113", metadata=_doc(
        "Our Storage SCP when PACS_RETRIEVE=c-move; the PACS must send to AE_TITLE there."))
    pacs_pool_size: int = field(default=4, metadata=_doc(
        "Associations per process with the PACS (also the parallel series retrievals)."))
    pacs_connect_timeout: float = field(default=5.0, metadata=_doc(
        "Seconds for the TCP connection to the PACS."))
    pacs_acse_timeout: float = field(default=10.0, metadata=_doc(
        "Seconds for A-ASSOCIATE / A-RELEASE answers from the PACS."))
    pacs_dimse_timeout: float = field(default=60.0, metadata=_doc(
        "Seconds between two messages of one DIMSE operation; also the wait for a free "
        "pooled association."))
    pacs_idle_timeout: float = field(default=20.0, metadata=_doc(
        "Seconds an idle association to the PACS is kept (below the PACS's own limit; "
        "Orthanc's is 30)."))
    pacs_retries: int = field(default=2, metadata=_doc(
        "Retries of a transiently failed PACS operation."))
    pacs_backoff: float = field(default=0.25, metadata=_doc(
        "First retry delay in seconds, doubled each retry."))
    pacs_retrieve_timeout: float = field(default=600.0, metadata=_doc(
        "Longest a request waits for a series retrieval from the PACS."))
    pacs_cache_ttl: float = field(default=0.0, metadata=_doc(
        "Seconds after which a cached series is fetched from the PACS again; 0 = never."))
    cors_origins: str = field(default="*", metadata=_doc(
        "Comma-separated origins allowed by CORS, `*` for any."))
    max_upload_bytes: int = field(default=2 * GiB, metadata=_doc(
        "Largest STOW-RS request body, in bytes; larger bodies get 413."))
    # --- HTTP request limits: each exceeded one is answered in the face's own form
    # (DICOMweb JSON, FHIR OperationOutcome) and a refused STOW stores nothing.
    request_line_bytes: int = field(default=32 * 1024, metadata=_doc(
        "Longest HTTP request line (method, URL with query, version), in bytes; longer "
        "gets 414. QIDO URLs of OHIF and dicomweb-client carry long UID lists."))
    body_idle_timeout: float = field(default=30.0, metadata=_doc(
        "Seconds a request body may pause with no byte arriving; then 408, nothing stored."))
    body_min_rate: int = field(default=4096, metadata=_doc(
        "Bytes per second a request body must average: the time spent waiting for it may "
        "be at most BODY_IDLE_TIMEOUT + bytes / BODY_MIN_RATE, else 408. 0 = no minimum."))
    upload_slots: int = field(default=3, metadata=_doc(
        "Request bodies one worker process reads at once; below its 4 threads, so a worker "
        "always has a thread for reads and health checks. A body finding every slot busy "
        "gets 503 with Retry-After: 1 (after UPLOAD_WAIT)."))
    upload_wait: float = field(default=1.0, metadata=_doc(
        "Seconds a request body waits for a free upload slot, while some slot holder "
        "began less than this ago (likely a fast upload); slots held longer, by slow "
        "bodies, refuse at once."))
    stow_max_parts: int = field(default=10000, metadata=_doc(
        "Parts in one STOW-RS request; more gets 413 and nothing is stored."))
    stow_part_header_bytes: int = field(default=16 * 1024, metadata=_doc(
        "Longest header block of one STOW-RS part, in bytes; longer gets 400."))
    # --- end of HTTP request limits
    temp_max_age: float = field(default=3600.0, metadata=_doc(
        "Seconds after which a `.part` file in `DATA_DIR/tmp` counts as left by a crash: "
        "removed at start-up and by `check --repair`. Must exceed the longest STOW request "
        "(its parts wait there until the whole body has arrived) and the longest PACS "
        "retrieval; a part still being written is never removed."))
    workers: int = field(default=2 * (os.cpu_count() or 1), metadata=_doc(
        "gunicorn worker processes (default 2 x cores)."))
    duplicate_policy: str = field(default="reject", metadata=_doc(
        "Same SOPInstanceUID, different bytes: `reject` (STOW FailureReason 0x0111, "
        "importer 'rejected') or `overwrite`. Identical bytes always succeed.",
        ("reject", "overwrite")))
    import_workers: int = field(default=os.cpu_count() or 1, metadata=_doc(
        "Processes that parse and store files during `import`."))
    mappings_dir: str = field(default="", metadata=_doc(
        "A folder holding the whole clinical-sheet → FHIR mapping (a copy of the built-in "
        "`gateway/mapping/yaml/`, edited; docs/mapping.md). Empty: the built-in mapping."))
    metadata_cache_bytes: int = field(default=128 * MiB, metadata=_doc(
        "Series metadata documents kept in memory per process: by the archive, and again "
        "with absolute BulkDataURIs by DICOMweb (each at most this many bytes)."))
    gzip_cache_bytes: int = field(default=64 * MiB, metadata=_doc(
        "Gzipped JSON response bodies kept per process (warm metadata is never compressed "
        "twice)."))
    fhir_cache_bytes: int = field(default=16 * MiB, metadata=_doc(
        "Finished FHIR search results kept per process (dropped when an import changes the "
        "resources; on PostgreSQL a counter row read per search tells every node)."))
    fhir_cache_items: int = field(default=2048, metadata=_doc(
        "FHIR search plans, and results, kept per process (each)."))
    render_cache_items: int = field(default=4096, metadata=_doc(
        "Grey-level tables and image layouts kept per process for rendered images."))
    log_level: str = field(default="INFO", metadata=_doc(
        "Python logging level.", ("DEBUG", "INFO", "WARNING", "ERROR")))

    # Read-path limits: what one request may ask for. Each exceeded limit is answered in the
    # face's own form (DICOMweb: 400 + JSON reason; FHIR: an OperationOutcome).
    max_frames_per_request: int = field(default=1000, metadata=_doc(
        "Frame numbers one WADO-RS frames request may list (never more than the instance "
        "has, no duplicates); more: 400. The bulk pixel data resource is not limited."))
    max_rendered_pixels: int = field(default=4096 * 4096, metadata=_doc(
        "Largest rendered image, in pixels: the WADO-RS `viewport` vw x vh, the WADO-URI "
        "rows x columns, or the size one of them implies; larger: 400."))
    max_qido_results: int = field(default=5000, metadata=_doc(
        "Most QIDO-RS matches in one response; a larger or absent `limit` is reduced to it, "
        "with the PS3.18 Warning header when more matches exist (page on with `offset`)."))
    max_fhir_count: int = field(default=1000, metadata=_doc(
        "Largest FHIR `_count`; a larger one is reduced to it (the Bundle's `next` link pages "
        "on) and an OperationOutcome entry in the Bundle says so."))

    # --- Access control and audit, HTTP side (docs/security.md): the
    # gateway as an OAuth 2.0 resource server with SMART scopes; one audit trail.
    auth_mode: str = field(default="off", metadata=_doc(
        "`off` (no access control, as before), `public-read` (anonymous reads; a token for "
        "writes, the audit trail and restricted collections) or `required` (a token for "
        "every data request).", ("off", "public-read", "required")))
    auth_issuer: str = field(default="", metadata=_doc(
        "OIDC issuer URL; its `/.well-known/openid-configuration` gives `jwks_uri` (and the "
        "introspection endpoint). Tokens' `iss` must equal it exactly."))
    auth_audience: str = field(default="", metadata=_doc(
        "Value that must be in a token's `aud`. Empty means PUBLIC_URL."))
    auth_leeway: int = field(default=30, metadata=_doc(
        "Seconds of clock skew allowed on `exp`/`nbf`/`iat`."))
    auth_jwks_max_age: float = field(default=300.0, metadata=_doc(
        "Seconds a fetched JWKS is trusted before it is fetched again (a key the issuer "
        "removed stops its tokens then)."))
    auth_jwks_refresh_interval: float = field(default=15.0, metadata=_doc(
        "Least seconds between two JWKS fetches: a token with an unknown `kid` refetches at "
        "most this often (a flood of unknown kids cannot hammer the issuer)."))
    auth_introspection_url: str = field(default="", metadata=_doc(
        "RFC 7662 endpoint for opaque tokens. Empty with AUTH_CLIENT_ID set: the issuer's "
        "`introspection_endpoint`."))
    auth_client_id: str = field(default="", metadata=_doc(
        "Client id the gateway introspects opaque tokens with (RFC 7662 2.1)."))
    auth_client_secret: str = field(default="", metadata=_doc(
        "Its client secret (HTTP Basic, RFC 6749 2.3.1)."))
    auth_allow_anonymous_remote: bool = field(default=False, metadata=_doc(
        "Allow AUTH_MODE=off on a non-loopback HTTP_BIND or DIMSE_BIND (anyone who can reach "
        "it then reads and writes every patient)."))
    auth_restricted_collections: str = field(default="", metadata=_doc(
        "Comma-separated limited-access collections: only tokens whose collections claim "
        "names one see it; anonymous callers never do."))
    auth_collections_claim: str = field(default="collections", metadata=_doc(
        "Token claim (array or space-separated) naming the restricted collections granted."))
    viewer_oidc_client_id: str = field(default="", metadata=_doc(
        "Turns on OHIF's `oidc[0]` in /viewer/app-config.js (authority AUTH_ISSUER, "
        "authorization code + PKCE, silent renew)."))
    audit_syslog: str = field(default="", metadata=_doc(
        "`tcp://host:port` or `tls://host:port`: also send PS3.15 A.5 audit messages there "
        "(RFC 5424 framing; RFC 6587 octet counting, RFC 5425 over TLS)."))
    audit_syslog_tls_ca: str = field(default="", metadata=_doc(
        "PEM CA bundle that signs the syslog collector's certificate (default: system CAs)."))
    # --- end of access control and audit, HTTP side

    # --- DIMSE security (docs/security.md "DIMSE"): DICOM TLS
    # (PS3.15 B.12), peer hosts, per-AE services, User Identity (PS3.7 D.3.3.7).
    dimse_tls_bind: str = field(default="", metadata=_doc(
        "HOST:PORT of a DICOM TLS listener beside DIMSE_BIND (PS3.15 B.12: TLS 1.2+; 2762 is "
        "DICOM's TLS port). Empty: no TLS listener."))
    dimse_tls_cert: str = field(default="", metadata=_doc(
        "PEM certificate (chain) of the DICOM TLS listener."))
    dimse_tls_key: str = field(default="", metadata=_doc(
        "PEM private key of the DICOM TLS listener."))
    dimse_tls_ca: str = field(default="", metadata=_doc(
        "PEM CA bundle: set means client certificates are required and verified; empty "
        "means none are asked for."))
    dimse_peer_hosts: str = field(default="", metadata=_doc(
        "Where peers may connect from, comma-separated: `10.1.0.0/16` or `10.1.2.3` for any "
        "AE, `AET@10.1.2.3` (or a network) to tie an AE title to its hosts. A peer outside "
        "gets A-ASSOCIATE-RJ (1, 1, 3). Empty: any host."))
    dimse_ae_permissions: str = field(default="", metadata=_doc(
        "`AET=find+get+move+store,...`: the services (`echo find get move store`) each "
        "calling AE may use; `*` is the entry for AEs not listed (none without it). Others "
        "get status 0x0124. Empty: every AE may use everything."))
    dimse_require_identity: bool = field(default=False, metadata=_doc(
        "Reject associations without a verifiable User Identity (a JWT, or over TLS a "
        "username + access token) with A-ASSOCIATE-RJ (1, 1, 1)."))
    # --- end of DIMSE security

    # --- collections (issue 13): which collections each DIMSE peer sees
    dimse_ae_collections: str = field(default="", metadata=_doc(
        "`AET=COLL+COLL,...`: the collections a calling AE sees through the DIMSE SCP "
        "(C-FIND answers, C-GET/C-MOVE sources and C-STORE targets; another collection's "
        "UID answers like an unknown one, a C-STORE outside is 0x0124); `*=...` applies to "
        "every AE not listed. Empty: every AE sees every collection."))
    # --- end of collections

    # Object storage and many nodes (docs/scale.md): files in an S3
    # bucket, a node-local hot cache, the bounded pull-through cache of the PACS mode.
    store_url: str = field(default="", metadata=_doc(
        "Where instance files live: empty or `file://PATH` (default `DATA_DIR/files`), or "
        "`s3://bucket/prefix` (any S3-compatible store; DATA_DIR keeps temp files and the hot "
        "cache)."))
    s3_endpoint_url: str = field(default="", metadata=_doc(
        "S3 endpoint (`http://127.0.0.1:9000` for MinIO/SeaweedFS). Empty: AWS's own."))
    s3_region: str = field(default="", metadata=_doc(
        "S3 region. Empty: the AWS chain's (`AWS_DEFAULT_REGION`, profile)."))
    s3_access_key_id: str = field(default="", metadata=_doc(
        "S3 access key. Empty: the standard AWS credential chain (env, profile, role)."))
    s3_secret_access_key: str = field(default="", metadata=_doc(
        "S3 secret key, with S3_ACCESS_KEY_ID."))
    s3_timeout: float = field(default=5.0, metadata=_doc(
        "Seconds one object store call may take as a whole (connect, read, retries); a store "
        "down or hung answers 503 with Retry-After within it."))
    s3_multipart_threshold: int = field(default=16 * MiB, metadata=_doc(
        "Objects at least this large are uploaded in parts (of this size, 5 MiB to 64 MiB)."))
    s3_orphan_grace: float = field(default=3600.0, metadata=_doc(
        "Seconds an object no index row points at is kept before the sweeper removes it "
        "(longer than the longest STOW request)."))
    cache_max_bytes: int = field(default=GiB, metadata=_doc(
        "Bytes of each node's hot cache of the object store (DATA_DIR/hot) and of the PACS "
        "mode's pull-through cache (the whole archive: eviction by series)."))
    cache_high_watermark: float = field(default=0.9, metadata=_doc(
        "Pull-through cache: eviction starts above this fraction of CACHE_MAX_BYTES."))
    cache_low_watermark: float = field(default=0.7, metadata=_doc(
        "Pull-through cache: eviction stops below this fraction of CACHE_MAX_BYTES."))
    cache_purge_delay: float = field(default=60.0, metadata=_doc(
        "Pull-through cache: a series accessed within this many seconds is in use: neither "
        "evicted nor purged (a stream in progress renews its series for as long as it lasts)."))

    # --- IDC backend (issue 16, docs/idc.md): the public archive from NCI Imaging Data
    # Commons' buckets, searches from its series index, series fetched on first use.
    backend: str = field(default="", metadata=_doc(
        "`idc`: serve NCI Imaging Data Commons' public buckets (below). Empty: the embedded "
        "archive, or the PACS when PACS is set.", choices=("", "idc")))
    idc_bucket_url: str = field(default="s3://idc-open-data", metadata=_doc(
        "The bucket holding one folder per series (`<crdc_series_uuid>/<instance>.dcm`); "
        "read anonymously unless IDC_ACCESS_KEY_ID is set."))
    idc_endpoint_url: str = field(default="", metadata=_doc(
        "S3 endpoint of the bucket (a local copy in tests). Empty: AWS's own."))
    idc_region: str = field(default="us-east-1", metadata=_doc(
        "Region of the bucket (idc-open-data is in us-east-1)."))
    idc_access_key_id: str = field(default="", metadata=_doc(
        "Access key for a bucket that needs one. Empty: unsigned (anonymous) requests."))
    idc_secret_access_key: str = field(default="", metadata=_doc(
        "Secret key, with IDC_ACCESS_KEY_ID."))
    idc_index: str = field(default="", metadata=_doc(
        "Series-level index (parquet, the `idc_index` schema). Empty: the one shipped by "
        "the installed `idc-index-data`."))
    idc_collections: str = field(default="", metadata=_doc(
        "Comma-separated collections to serve (names like `COVID-19-AR` or ids like "
        "`covid_19_ar`). Empty: every collection of the index."))
    idc_timeout: float = field(default=10.0, metadata=_doc(
        "Seconds one bucket call (a listing, one object's GET) may take as a whole; a "
        "bucket that does not answer in time is 503 with Retry-After."))
    idc_fetch_workers: int = field(default=8, metadata=_doc(
        "Objects of one series fetched in parallel."))
    # --- end of IDC backend

    # ---------------------------------------------------------------- derived
    @property
    def index_url(self) -> str:
        """The SQLAlchemy URL of the index, defaulting to a file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve() / 'index.sqlite'}"

    @property
    def public_base(self) -> str:
        return self.public_url.rstrip("/")

    def to_env(self) -> dict[str, str]:
        """Every setting as ``GATEWAY_*`` variables: what child processes (gunicorn master and
        workers, the DIMSE SCP, helpers) get, so they resolve exactly these settings."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = value.resolve()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[ENV_PREFIX + f.name.upper()] = str(value)
        return env

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` applied and validated (tests build settings this way)."""
        if "http_bind" in changes and self.public_url == f"http://{self.http_bind}":
            changes = _derive_public_url(changes)
        return _validated(dataclasses.replace(self, **changes))

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, config_file: str | os.PathLike[str] | None = None,
             env: Mapping[str, str] | None = None) -> "Settings":
        """Defaults, then the TOML file (``--config`` or ``GATEWAY_CONFIG``), then env."""
        env = os.environ if env is None else env
        _refuse_unknown_variables(env)
        values: dict[str, Any] = {}
        path = config_file or env.get(ENV_PREFIX + "CONFIG")
        if path:
            values.update(_from_toml(Path(path)))
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = raw
        coerced = {name: _coerce(name, value) for name, value in values.items()}
        return _validated(cls(**_derive_public_url(coerced)))


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
# GATEWAY_* variables that are not settings: the config file, and knobs of the test tools.
NOT_SETTINGS = frozenset({"CONFIG", "SCHEMATHESIS_EXAMPLES", "FUZZ_SECONDS", "TEST_STORE"})
READ_LIMITS = ("max_frames_per_request", "max_rendered_pixels", "max_qido_results",
               "max_fhir_count")


def closest(value: str, choices: Any) -> str | None:
    """The most similar of ``choices`` (difflib), ignoring case and separators."""
    squash = {"".join(c for c in str(x).lower() if c.isalnum()): x for x in choices}
    wanted = "".join(c for c in value.lower() if c.isalnum())
    match = difflib.get_close_matches(wanted, list(squash), n=1, cutoff=0.6)
    return squash[match[0]] if match else None


def _refuse_unknown_variables(env: Mapping[str, str]) -> None:
    """A mistyped ``GATEWAY_*`` variable must stop the start, not be ignored: a typo in
    ``GATEWAY_AUTH_MODE`` would otherwise run the gateway wide open."""
    names = {f.upper() for f in _FIELDS} | NOT_SETTINGS
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX):] not in names)
    if not unknown:
        return
    parts = []
    for variable in unknown:
        hint = closest(variable[len(ENV_PREFIX):], sorted(names - NOT_SETTINGS))
        parts.append(variable + (f" (did you mean {ENV_PREFIX}{hint}?)" if hint else ""))
    raise SettingsError(f"unknown setting variable(s): {', '.join(parts)}")


def _derive_public_url(values: dict[str, Any]) -> dict[str, Any]:
    """PUBLIC_URL not given but HTTP_BIND is: links point at where we listen."""
    if "public_url" not in values and "http_bind" in values:
        return {**values, "public_url": f"http://{values['http_bind']}"}
    return values


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from exc
    table = data.get("gateway", data)
    unknown = sorted(k for k in table if k.lower() not in _FIELDS)
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    return {k.lower(): v for k, v in table.items()}


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELDS[name].type
    try:
        if kind in ("Path", Path):
            return Path(value)
        if kind in ("bool", bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"not a boolean: {value!r}")
            return text in ("1", "true", "yes", "on")
        if kind in ("int", int):
            return int(value)
        if kind in ("float", float):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {exc}") from exc


def _validated(s: Settings) -> Settings:
    for f in dataclasses.fields(s):
        choices = f.metadata.get("choices")
        if choices and getattr(s, f.name) not in choices:
            hint = closest(str(getattr(s, f.name)), choices)
            raise SettingsError(
                f"{ENV_PREFIX}{f.name.upper()}={getattr(s, f.name)!r}: expected one of "
                f"{', '.join(choices)}" + (f" (did you mean {hint!r}?)" if hint else ""))
    for key in ("http_bind", "dimse_bind", "pacs_move_bind"):
        parse_hostport(getattr(s, key), f"{ENV_PREFIX}{key.upper()}")
    if s.dimse_tls_bind:  # DIMSE security
        parse_hostport(s.dimse_tls_bind, f"{ENV_PREFIX}DIMSE_TLS_BIND")
        if not (s.dimse_tls_cert and s.dimse_tls_key):
            raise SettingsError(f"{ENV_PREFIX}DIMSE_TLS_BIND needs DIMSE_TLS_CERT and "
                                "DIMSE_TLS_KEY (the listener's certificate and key)")
    if s.pacs:
        parse_ae_address(s.pacs, f"{ENV_PREFIX}PACS")
    for item in filter(None, (x.strip() for x in s.known_aes.split(","))):
        parse_ae_address(item, f"{ENV_PREFIX}KNOWN_AES")
    if not (1 <= len(s.ae_title) <= 16):
        raise SettingsError(f"{ENV_PREFIX}AE_TITLE must be 1 to 16 characters")
    positive = ("max_upload_bytes", "workers", "import_workers", "dimse_max_associations",
                "dimse_timeout", "pacs_pool_size", "pacs_connect_timeout", "pacs_acse_timeout",
                "pacs_dimse_timeout", "pacs_idle_timeout", "pacs_retrieve_timeout")
    for key in ("metadata_cache_bytes", "gzip_cache_bytes", "fhir_cache_bytes",
                "fhir_cache_items", "render_cache_items"):
        if getattr(s, key) < 0:
            raise SettingsError(f"{ENV_PREFIX}{key.upper()} must not be negative (0: no cache)")
    for key in positive:
        if getattr(s, key) <= 0:
            raise SettingsError(f"{ENV_PREFIX}{key.upper()} must be positive")
    for key in ("request_line_bytes", "body_idle_timeout", "upload_slots",  # HTTP limits
                "stow_max_parts", "stow_part_header_bytes"):
        if getattr(s, key) <= 0:
            raise SettingsError(f"{ENV_PREFIX}{key.upper()} must be positive")
    for key in ("body_min_rate", "upload_wait"):
        if getattr(s, key) < 0:
            raise SettingsError(f"{ENV_PREFIX}{key.upper()} must not be negative")
    for key in ("pacs_retries", "pacs_backoff", "pacs_cache_ttl", "temp_max_age"):
        if getattr(s, key) < 0:
            raise SettingsError(f"{ENV_PREFIX}{key.upper()} must not be negative")
    _validate_scale(s)
    for key in READ_LIMITS:
        if getattr(s, key) <= 0:
            raise SettingsError(f"{ENV_PREFIX}{key.upper()} must be positive")
    if s.auth_leeway < 0:
        raise SettingsError(f"{ENV_PREFIX}AUTH_LEEWAY must not be negative")
    for key in ("auth_jwks_max_age", "auth_jwks_refresh_interval"):
        if getattr(s, key) <= 0:
            raise SettingsError(f"{ENV_PREFIX}{key.upper()} must be positive")
    if s.audit_syslog and not s.audit_syslog.startswith(("tcp://", "tls://")):
        raise SettingsError(f"{ENV_PREFIX}AUDIT_SYSLOG: expected tcp://HOST:PORT or "
                            f"tls://HOST:PORT, got {s.audit_syslog!r}")

    ae_collections(s.dimse_ae_collections)  # collections: a malformed map stops the start
    return s


def ae_collections(text: str) -> dict[str, frozenset[str]]:
    """DIMSE_AE_COLLECTIONS ``AET=COLL+COLL,...`` → {AET or ``*``: collections}."""
    out: dict[str, frozenset[str]] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        aet, sep, names = item.partition("=")
        wanted = frozenset(n.strip() for n in names.split("+") if n.strip())
        if not sep or not 1 <= len(aet.strip()) <= 16 or not wanted:
            raise SettingsError(f"{ENV_PREFIX}DIMSE_AE_COLLECTIONS: expected "
                                f"AET=COLLECTION+COLLECTION,..., got {item!r}")
        out[aet.strip()] = wanted
    return out


def parse_hostport(text: str, what: str = "address") -> tuple[str, int]:
    """``HOST:PORT`` → (host, port), with a message naming the setting on error."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise SettingsError(f"{what}: expected HOST:PORT, got {text!r}")
    return host, int(port)


def parse_ae_address(text: str, what: str = "address") -> tuple[str, str, int]:
    """``AET@host:port`` → (aet, host, port)."""
    aet, sep, rest = text.strip().partition("@")
    if not sep or not (1 <= len(aet) <= 16):
        raise SettingsError(f"{what}: expected AET@HOST:PORT, got {text!r}")
    host, port = parse_hostport(rest, what)
    return aet, host, port


def _validate_scale(s: Settings) -> None:
    """The object storage block: positive sizes (STORE_URL is parsed when the store opens;
    the watermarks are clamped to (0, 1] where the cache uses them)."""
    for key in ("s3_timeout", "s3_multipart_threshold", "cache_max_bytes"):
        if getattr(s, key) <= 0:
            raise SettingsError(f"{ENV_PREFIX}{key.upper()} must be positive")
    for key in ("s3_orphan_grace", "cache_purge_delay"):
        if getattr(s, key) < 0:
            raise SettingsError(f"{ENV_PREFIX}{key.upper()} must not be negative")
