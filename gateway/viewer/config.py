"""The viewer's ``app-config.js``, generated on every request (never read from disk).

Origin choice: the data source roots are built in the browser from
``window.location.origin`` + ``/dicomweb`` (and ``/wado``), not from PUBLIC_URL. The
viewer is then same-origin with the DICOMweb it queries whatever host name the user
typed (``localhost`` vs ``127.0.0.1``, a proxy's public name), so it needs no CORS.
BulkDataURIs in metadata stay absolute from PUBLIC_URL (docs/viewer.md); when the page's
origin differs from PUBLIC_URL those fetches are cross-origin and rely on CORS_ORIGINS.

Two data source profiles: ``gateway`` (docs/viewer.md, what this gateway supports) and
``conservative`` (the settings other sites use with weaker servers); the e2e test
proves the viewer works with both.

The origin comes from the browser and the mount is fixed at ``/viewer`` (the build is
rewritten for it at install time). VIEWER_OIDC_CLIENT_ID adds OHIF's ``oidc[0]``: the
authorization code flow with PKCE (oidc-client-ts) against AUTH_ISSUER, silent renew,
the callback under the mount; OHIF then sends the access token on every DICOMweb request.
"""
from __future__ import annotations

import json
from typing import Any, Sequence
from urllib.parse import quote

from . import MOUNT

SOURCE_NAME = "tcia-gateway"
PROFILES = ("gateway", "conservative")

# docs/viewer.md, "Data source". Roots are origin-relative; the JS prefixes them.
_GATEWAY_SOURCE: dict[str, Any] = {
    "friendlyName": "tcia-gateway DICOMweb",
    "name": "tcia-gateway",
    "qidoRoot": "/dicomweb",
    "wadoRoot": "/dicomweb",
    "wadoUriRoot": "/wado",
    "qidoSupportsIncludeField": True,
    "imageRendering": "wadors",
    "thumbnailRendering": "thumbnail",
    "enableStudyLazyLoad": True,
    "supportsFuzzyMatching": True,
    "supportsWildcard": True,
    "omitQuotationForMultipartRequest": True,
    "dicomUploadEnabled": True,
    "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
}

# What sites with less capable servers configure (docs/viewer.md): the viewer must work too.
_CONSERVATIVE_OVERRIDES: dict[str, Any] = {
    "qidoSupportsIncludeField": False,
    "thumbnailRendering": "wadors",
    "supportsFuzzyMatching": False,
    "omitQuotationForMultipartRequest": False,
}


def data_source(profile: str = "gateway") -> dict[str, Any]:
    """The ``dataSources[0].configuration`` for ``profile`` (roots origin-relative)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown viewer profile {profile!r}; expected one of {PROFILES}")
    config = dict(_GATEWAY_SOURCE)
    if profile == "conservative":
        config.update(_CONSERVATIVE_OVERRIDES)
    return config


OIDC_SCOPE = "openid user/ImagingStudy.rs user/Patient.rs"
_OIDC_URIS = ("redirect_uri", "post_logout_redirect_uri", "silent_redirect_uri")


def oidc_block(authority: str, client_id: str, scope: str = OIDC_SCOPE) -> dict[str, Any]:
    """OHIF's ``oidc[0]`` (authorization code + PKCE; URIs origin-relative, made absolute
    in the browser like the data source roots)."""
    # OHIF registers a route for each URI's path (minus the mount for the callback): the
    # post-logout one must not be `/viewer/`, which would shadow the `/viewer` mode route.
    return {"authority": authority.rstrip("/"), "client_id": client_id,
            "redirect_uri": f"{MOUNT}/callback",
            "silent_redirect_uri": f"{MOUNT}/silent-refresh.html",
            "post_logout_redirect_uri": f"{MOUNT}/signed-out", "response_type": "code",
            "scope": scope,
            "automaticSilentRenew": True, "revokeAccessTokenOnSignout": True}


def collection_source(name: str, profile: str = "gateway") -> dict[str, Any]:
    """The data source of one collection root (``/collections/{name}/dicomweb``): the same
    configuration, narrowed by the gateway; ``/viewer/?dataSources=<name>`` lists it alone
    (OHIF's WorkList ``dataSources`` parameter takes a ``sourceName``)."""
    root = "/collections/" + quote(name, safe="") + "/dicomweb"
    config = {**data_source(profile), "friendlyName": f"{name} (tcia-gateway)",
              "name": name, "qidoRoot": root, "wadoRoot": root}
    return {"namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
            "sourceName": name, "configuration": config}


def app_config(profile: str = "gateway", collections: Sequence[str] = (),
               oidc: dict[str, Any] | None = None) -> dict[str, Any]:
    """``window.config`` as data (everything but the origin, added in the browser): the whole
    archive as the default source, then one source per collection held."""
    source = data_source(profile)
    extra = {"oidc": [oidc]} if oidc else {}
    return {
        "name": "tcia-gateway",
        "routerBasename": MOUNT,
        "extensions": [],   # the build's own extensions and modes
        "modes": [],
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,  # same origin by construction
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "defaultDataSourceName": SOURCE_NAME,
        "dataSources": [{
            "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
            "sourceName": SOURCE_NAME,
            "configuration": source,
        }, *(collection_source(n, profile) for n in collections if n != SOURCE_NAME)],
        **extra,
    }


_ROOT_KEYS = ("qidoRoot", "wadoRoot", "wadoUriRoot")

_TEMPLATE = """\
/* Generated by tcia-gateway (gateway/viewer/config.py) for each request; edits are lost.
   Data source roots are made absolute from the page's own origin (same origin, no CORS). */
(function () {
  var origin = window.location.origin;
  var config = %(config)s;
  config.dataSources.forEach(function (source) {
    %(roots)s.forEach(function (key) {
      if (source.configuration[key]) {
        source.configuration[key] = origin + source.configuration[key];
      }
    });
  });
  (config.oidc || []).forEach(function (oidc) {
    %(uris)s.forEach(function (key) {
      if (oidc[key] && oidc[key].charAt(0) === "/") { oidc[key] = origin + oidc[key]; }
    });
  });
  window.config = config;
})();
"""


def app_config_js(profile: str = "gateway", collections: Sequence[str] = (),
                  oidc: dict[str, Any] | None = None) -> str:
    """The JavaScript OHIF loads from ``/viewer/app-config.js``."""
    config = json.dumps(app_config(profile, collections, oidc), indent=2).replace("\n", "\n  ")
    return _TEMPLATE % {"config": config, "roots": json.dumps(list(_ROOT_KEYS)),
                        "uris": json.dumps(list(_OIDC_URIS))}
