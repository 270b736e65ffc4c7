"""The IDC backend's plain GetObject: URLs as S3 encodes keys, S3 error bodies read into
botocore's error shape (so the bucket translates them as it does the listing's)."""
from __future__ import annotations

from gateway.archive.errors import UpstreamError
from gateway.backends.idc.bucket import Bucket
from gateway.backends.idc.objects import ObjectGetter, S3Error, error_code

NO_SUCH_KEY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
               b'<Message>The specified key does not exist.</Message>'
               b'<Key>a/b.dcm</Key><RequestId>4442587FB7D0A2F9</RequestId></Error>')


def test_error_code_reads_code_and_message_of_an_s3_error_body() -> None:
    assert error_code(NO_SUCH_KEY) == ("NoSuchKey", "The specified key does not exist.")
    assert error_code(b"") == ("", "")
    assert error_code(b"<html>bad gateway</html>") == ("", "")


def test_object_urls_are_path_style_with_the_key_encoded_once() -> None:
    getter = ObjectGetter("https://s3.amazonaws.com", "idc-open-data", region="us-east-1",
                          credentials=None, timeout=1, pool_size=1)
    assert getter.url("a b/c+d~e.dcm") == "https://s3.amazonaws.com/idc-open-data/a%20b/c%2Bd~e.dcm"
    assert getter._headers(getter.url("k")) == {}  # the public bucket: unsigned
    signed = ObjectGetter("http://127.0.0.1:1", "b", region="us-east-1",
                          credentials=("AKID", "secret"), timeout=1, pool_size=1)
    headers = signed._headers(signed.url("k"))
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")
    assert "x-amz-content-sha256" in {k.lower() for k in headers}


def test_an_s3_error_is_translated_as_botocore_errors_are() -> None:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    client = boto3.client("s3", region_name="us-east-1",
                          config=Config(signature_version=UNSIGNED))
    bucket = Bucket(client, "s3://idc-open-data", timeout=1, workers=1)
    try:
        missing = bucket._translate("object k", S3Error(404, "NoSuchKey", "gone"))
        assert isinstance(missing, UpstreamError) and "missing (NoSuchKey)" in str(missing)
        refused = bucket._translate("object k", S3Error(403, "AccessDenied"))
        assert isinstance(refused, UpstreamError) and "refused object k: AccessDenied" in str(refused)
        down = bucket._translate("object k", S3Error(503, "SlowDown"))
        assert type(down).__name__ == "Unavailable" and "SlowDown" in str(down)
    finally:
        bucket.close()
