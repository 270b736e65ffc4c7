"""Session fixtures shared by every suite: a small synthetic cohort, an archive
loaded with it, and the gateway served by gunicorn on a free loopback port."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from gateway.config import Settings
from tests.support.procs import GatewayServer, start_gateway

SMALL = dict(patients=6, seed=7, ct_slices=12, xr_size=256)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Logs and screenshots kept after the run (CI uploads ./test-artifacts)."""
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory):
    """A 6-patient synthetic cohort (radiographs, one CT, compressed syntaxes)."""
    from gateway.synth import write_cohort
    return write_cohort(tmp_path_factory.mktemp("cohort"), **SMALL)


@pytest.fixture(scope="session")
def test_store(request: pytest.FixtureRequest) -> dict[str, str]:
    """GATEWAY_TEST_STORE=s3: the shared data dirs keep their files in SeaweedFS (the
    Settings changes that say so; the AWS credential chain's variables are set for every
    process, and copies of the data dir find the bucket recorded in their index). Else {}."""
    if os.environ.get("GATEWAY_TEST_STORE", "file") != "s3":
        return {}
    store = request.getfixturevalue("s3_store")
    bucket = store.create_bucket("suite")
    patch = pytest.MonkeyPatch()
    for name, value in store.env.items():
        patch.setenv(name, value)
    request.addfinalizer(patch.undo)
    return {"store_url": f"s3://{bucket}/loaded"}


@pytest.fixture(scope="session")
def loaded_data_dir(tmp_path_factory: pytest.TempPathFactory, small_cohort,
                    test_store: dict[str, str]) -> Path:
    """A data dir with the small cohort and its clinical sheet imported (read-only use!)."""
    from gateway.archive.local import open_local
    from gateway.ingest.importer import run_import
    from gateway.ingest.clinical import import_clinical
    data = tmp_path_factory.mktemp("data")
    archive = open_local(Settings().replace(data_dir=data, **test_store))
    report = run_import(archive, [small_cohort.root], workers=2, progress=False)
    assert report.new == small_cohort.instances and not report.rejected
    import_clinical(archive, small_cohort.xlsx)
    from gateway.cli import _sync_collections  # ResearchStudy/ResearchSubject, as `import` does
    _sync_collections(Settings().replace(data_dir=data), archive)
    return data


@pytest.fixture
def data_copy(tmp_path: Path, loaded_data_dir: Path) -> Path:
    """A private copy of the loaded data dir, for tests that write."""
    target = tmp_path / "data"
    shutil.copytree(loaded_data_dir, target)
    return target


@pytest.fixture(scope="session")
def gateway_server(loaded_data_dir: Path, artifacts_dir: Path) -> Iterator[GatewayServer]:
    """The gateway under gunicorn on the loaded (read-only) data dir."""
    server = start_gateway(loaded_data_dir, artifacts_dir / "logs")
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for an empty data dir of this test."""
    return Settings().replace(data_dir=tmp_path / "data")


@pytest.fixture(scope="session")
def postgres(artifacts_dir: Path):
    """A real PostgreSQL server (Debian package) for the tests that run the index on it."""
    from tests.support.postgres import start_postgres
    server = start_postgres(artifacts_dir / "logs")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oidc_idp(artifacts_dir: Path):
    """panva's oidc-provider on loopback (tests/support/oidc_idp.py): patient-a/-b, clinician,
    backend, gateway (introspection) and viewer (code + PKCE) clients. Tests that restart or
    rotate keys start their own with `start_oidc`."""
    from tests.support.oidc_idp import start_oidc
    provider = start_oidc(artifacts_dir / "logs")
    yield provider
    provider.close()


@pytest.fixture
def forged_issuer():
    """A loopback issuer publishing the token forge's keys (tests/support/forged_issuer.py)."""
    from tests.support.forged_issuer import ForgedIssuer
    from tests.support.oidc_idp import DEFAULT_AUDIENCE
    with ForgedIssuer(DEFAULT_AUDIENCE) as issuer:
        yield issuer


@pytest.fixture(scope="session")
def syslog_receiver(artifacts_dir: Path):
    """rsyslog on loopback: RFC 6587 TCP and RFC 5425 TLS listeners writing what they receive
    (tests/support/syslog.py)."""
    from tests.support.syslog import start_rsyslog
    receiver = start_rsyslog(artifacts_dir / "logs")
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def s3_store(artifacts_dir: Path):
    """SeaweedFS `weed mini` on loopback with S3 credentials (tests/support/seaweed.py)."""
    from tests.support.seaweed import start_seaweed
    store = start_seaweed(artifacts_dir / "logs")
    yield store
    store.close()
