"""DIMSE access decisions, pure: per-AE services and User Identity (PS3.7 D.3.3.7).

`DIMSE_AE_PERMISSIONS` = `AET=find+get+move+store,OTHER=echo+find,*=echo`: each listed AE
may use the services named; `*` is the entry for AEs not listed; with a non-empty setting
and no `*`, an unlisted AE may use nothing. Empty setting: every AE may use everything.

User Identity decisions (the association answer is `IdentityRefused.dimse_reject`,
A-ASSOCIATE-RJ (1, 1, 1)):
- type 5 (JWT): the primary field is an access token, validated like a Bearer token.
- type 2 (username + passcode): only over TLS; the passcode is an access token (JWT or
  opaque), validated the same way, and the username must be its `sub` or `client_id`.
  No password database: the issuer stays the one authority for who someone is.
- types 1 (username only), 3 (Kerberos), 4 (SAML): not verifiable here; refused when
  DIMSE_REQUIRE_IDENTITY is set, otherwise the association is anonymous.
- an offered identity that fails (bad JWT, type 2 in clear) always refuses the
  association, required or not: bad credentials never degrade to anonymous.
"""
from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import IdentityRefused, InvalidToken, ServiceNotPermitted
from .principal import ANONYMOUS, Principal
from .settings import closest

ANY_AE = "*"


class Service(str, enum.Enum):
    ECHO = "echo"
    FIND = "find"
    GET = "get"
    MOVE = "move"
    STORE = "store"


# PS3.7 D.3.3.7.1 User-Identity-Type
USERNAME, USERNAME_PASSCODE, KERBEROS, SAML, JWT = 1, 2, 3, 4, 5


def parse_ae_permissions(text: str) -> dict[str, frozenset[Service]]:
    """`AET=find+get,...` -> {AET: {find, get}}; ValueError naming the bad item."""
    table: dict[str, frozenset[Service]] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        ae, sep, services = item.partition("=")
        ae = ae.strip()
        if not sep or not ae or len(ae) > 16:
            raise ValueError(f"DIMSE_AE_PERMISSIONS item {item!r}: expected AET=service+service")
        names = [s.strip().lower() for s in services.split("+") if s.strip()]
        if not names:
            raise ValueError(f"DIMSE_AE_PERMISSIONS item {item!r} names no service")
        table[ae] = frozenset(_service(name, item) for name in names)
    return table


def _service(name: str, item: str) -> Service:
    try:
        return Service(name)
    except ValueError:
        hint = closest(name, [s.value for s in Service])
        raise ValueError(f"DIMSE_AE_PERMISSIONS item {item!r}: unknown service {name!r}"
                         + (f" (did you mean {hint!r}?)" if hint else "")) from None


def check_service(table: Mapping[str, frozenset[Service]], calling_ae: str,
                  service: Service) -> None:
    """Raise `ServiceNotPermitted` (DIMSE 0x0124) unless `calling_ae` may use `service`."""
    if not table:
        return
    allowed = table.get(calling_ae.strip(), table.get(ANY_AE, frozenset()))
    if service not in allowed:
        raise ServiceNotPermitted(f"AE {calling_ae.strip()!r} may not use C-{service.value.upper()}")


@dataclass(frozen=True)
class IdentityOffer:
    """The User Identity sub-item a requestor sent (PS3.7 D.3.3.7.1)."""

    type: int
    primary: bytes
    secondary: bytes = b""
    positive_response_requested: bool = False

    @classmethod
    def from_pynetdicom(cls, item: Any) -> IdentityOffer:
        """From pynetdicom's `UserIdentityNegotiation` (attribute names as pynetdicom 3 has)."""
        return cls(int(item.user_identity_type),
                   bytes(item.primary_field or b""),
                   bytes(item.secondary_field or b""),
                   bool(getattr(item, "positive_response_requested", False)))


def decide_identity(offer: IdentityOffer | None, *, tls: bool, required: bool,
                    validate: Callable[[str], Principal]) -> Principal:
    """The association's principal, or `IdentityRefused`/`AccessError` (reject (1, 1, 1)).

    `validate` is the Bearer validator (`TokenValidator.principal`)."""
    if offer is None:
        if required:
            raise IdentityRefused("User Identity negotiation is required (DIMSE_REQUIRE_IDENTITY)")
        return ANONYMOUS
    if offer.type == JWT:
        return _token(offer.primary, validate)
    if offer.type == USERNAME_PASSCODE:
        if not tls:
            raise IdentityRefused("username + passcode identities are accepted over TLS only")
        principal = _token(offer.secondary, validate)
        user = offer.primary.decode("utf-8", "replace")
        if user not in (principal.sub, principal.client_id):
            raise IdentityRefused("the username is not the access token's sub or client_id")
        return principal
    if required:
        raise IdentityRefused(f"User Identity type {offer.type} cannot be verified; "
                              "send a JWT (type 5) or, over TLS, username + access token (type 2)")
    return ANONYMOUS


def _token(field: bytes, validate: Callable[[str], Principal]) -> Principal:
    try:
        token = field.decode("ascii").strip()
    except UnicodeDecodeError:
        raise InvalidToken("the identity is not an ASCII access token") from None
    if not token:
        raise IdentityRefused("empty identity")
    return validate(token)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PeerHosts:
    """DIMSE_PEER_HOSTS: networks any AE may connect from, and networks tied to one AE title.

    A calling AE title is only a claim; tying it to the hosts it is known at (as PACS
    administrators do in their AE tables) keeps a peer elsewhere from borrowing it."""

    anyone: tuple[Network, ...] = ()
    per_ae: Mapping[str, tuple[Network, ...]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.anyone and not self.per_ae

    def admits(self, calling_ae: str, address: str) -> bool:
        """An AE with its own entries must come from one of them; others from `anyone`
        (or from anywhere when only per-AE entries are set)."""
        if self.empty:
            return True
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False
        own = self.per_ae.get(calling_ae.strip())
        networks = own if own is not None else self.anyone
        if own is None and not self.anyone:
            return True
        return any(ip in net for net in networks)


def parse_peer_hosts(text: str) -> PeerHosts:
    """`10.0.0.0/8, MODALITY@10.1.2.3` -> PeerHosts; ValueError naming the bad item."""
    anyone: list[Network] = []
    per_ae: dict[str, list[Network]] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        ae, sep, host = item.rpartition("@")
        try:
            net = ipaddress.ip_network(host.strip().strip("[]"), strict=False)
        except ValueError:
            raise ValueError(f"DIMSE_PEER_HOSTS item {item!r}: expected an IP address or "
                             "network, optionally after AET@") from None
        if sep and not (1 <= len(ae.strip()) <= 16):
            raise ValueError(f"DIMSE_PEER_HOSTS item {item!r}: bad AE title")
        (per_ae.setdefault(ae.strip(), []) if sep else anyone).append(net)
    return PeerHosts(tuple(anyone), {k: tuple(v) for k, v in per_ae.items()})


def service_for_op(op: str) -> Service:
    """`c-find` / `C-FIND` / `find` -> Service.FIND."""
    return Service(op.lower().removeprefix("c-"))
