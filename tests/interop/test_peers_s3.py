"""SeaweedFS (`weed mini`) is an S3 store boto3 can use the way the gateway will.

Proves the peer: authenticated bucket and object calls, multipart upload, write-once PUT
(`If-None-Match: *` -> 412), ranged GET (206), listing with prefix and delimiter, delete;
anonymous or wrongly signed requests refused; only loopback listeners; and a SIGSTOPped
store makes calls hang until their timeout, then serves again after SIGCONT.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
import uuid

import boto3
import pytest
import requests
from botocore.exceptions import ClientError, ReadTimeoutError

from tests.support.seaweed import Seaweed

MiB = 1024 * 1024


@pytest.fixture
def bucket(s3_store: Seaweed) -> str:
    return s3_store.create_bucket(f"t-{uuid.uuid4().hex[:12]}")


def status(err: ClientError) -> int:
    return err.response["ResponseMetadata"]["HTTPStatusCode"]


def test_put_get_list_delete(s3_store: Seaweed, bucket: str) -> None:
    s3 = s3_store.client()
    body = os.urandom(300_000)
    put = s3.put_object(Bucket=bucket, Key="ab/cd/one.dcm", Body=body)
    assert put["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    s3.put_object(Bucket=bucket, Key="ab/cd/two.dcm", Body=b"2")
    s3.put_object(Bucket=bucket, Key="ef/three.dcm", Body=b"3")
    got = s3.get_object(Bucket=bucket, Key="ab/cd/one.dcm")
    assert got["Body"].read() == body and got["ContentLength"] == len(body)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="ab/")
    assert [o["Key"] for o in listed["Contents"]] == ["ab/cd/one.dcm", "ab/cd/two.dcm"]
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["ab/", "ef/"]
    s3.delete_object(Bucket=bucket, Key="ab/cd/two.dcm")
    with pytest.raises(ClientError) as gone:
        s3.head_object(Bucket=bucket, Key="ab/cd/two.dcm")
    assert status(gone.value) == 404
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_ranged_get(s3_store: Seaweed, bucket: str) -> None:
    s3 = s3_store.client()
    body = os.urandom(2 * MiB)
    s3.put_object(Bucket=bucket, Key="frames", Body=body)
    part = s3.get_object(Bucket=bucket, Key="frames", Range=f"bytes={MiB}-{MiB + 999}")
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert part["ContentRange"] == f"bytes {MiB}-{MiB + 999}/{2 * MiB}"
    assert part["Body"].read() == body[MiB:MiB + 1000]
    tail = s3.get_object(Bucket=bucket, Key="frames", Range="bytes=-10")
    assert tail["Body"].read() == body[-10:]


def test_write_once_put(s3_store: Seaweed, bucket: str) -> None:
    s3 = s3_store.client()
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert status(refused.value) == 412
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def test_multipart_upload(s3_store: Seaweed, bucket: str) -> None:
    s3 = s3_store.client()
    parts = [os.urandom(5 * MiB), os.urandom(MiB + 17)]  # S3: every part but the last >= 5 MiB
    upload = s3.create_multipart_upload(Bucket=bucket, Key="series.bin")["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="series.bin", PartNumber=n,
                                                     UploadId=upload, Body=data)["ETag"]}
            for n, data in enumerate(parts, 1)]
    with pytest.raises(ClientError):  # not visible before completion
        s3.head_object(Bucket=bucket, Key="series.bin")
    s3.complete_multipart_upload(Bucket=bucket, Key="series.bin", UploadId=upload,
                                 MultipartUpload={"Parts": done})
    whole = b"".join(parts)
    assert s3.get_object(Bucket=bucket, Key="series.bin")["Body"].read() == whole
    head = s3.head_object(Bucket=bucket, Key="series.bin")
    assert head["ContentLength"] == len(whole) and head["ETag"].strip('"').endswith("-2")
    span = s3.get_object(Bucket=bucket, Key="series.bin", Range=f"bytes={5 * MiB - 5}-{5 * MiB + 4}")
    assert span["Body"].read() == whole[5 * MiB - 5:5 * MiB + 5]  # a range across the parts


def test_aborted_multipart_leaves_nothing(s3_store: Seaweed, bucket: str) -> None:
    s3 = s3_store.client()
    upload = s3.create_multipart_upload(Bucket=bucket, Key="half")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="half", PartNumber=1, UploadId=upload, Body=os.urandom(5 * MiB))
    s3.abort_multipart_upload(Bucket=bucket, Key="half", UploadId=upload)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_requests_without_the_credentials_are_refused(s3_store: Seaweed, bucket: str) -> None:
    s3_store.client().put_object(Bucket=bucket, Key="private", Body=b"secret")
    anonymous = requests.get(f"{s3_store.endpoint_url}/{bucket}/private", timeout=5)
    assert anonymous.status_code == 403 and b"secret" not in anonymous.content
    forged = boto3.client("s3", endpoint_url=s3_store.endpoint_url, region_name="us-east-1",
                          aws_access_key_id=s3_store.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as refused:
        forged.get_object(Bucket=bucket, Key="private")
    assert status(refused.value) == 403


def test_listens_on_loopback_only_on_the_ports_it_was_given(s3_store: Seaweed) -> None:
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    mine = [line.split()[3] for line in out.splitlines() if f"pid={s3_store.proc.pid}," in line]
    ports = sorted(int(addr.rsplit(":", 1)[1]) for addr in mine)
    assert all(re.match(r"127\.0\.0\.1:\d+$", addr) for addr in mine), mine
    assert ports == sorted(s3_store.ports.values())


def test_a_stopped_store_hangs_calls_and_recovers(s3_store: Seaweed, bucket: str) -> None:
    s3 = s3_store.client()
    body = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="obj", Body=body)
    bounded = s3_store.client(connect_timeout=1, read_timeout=1, attempts=1)
    unbounded = s3_store.client(read_timeout=120, attempts=1)
    result: dict[str, bytes] = {}
    waiter = threading.Thread(target=lambda: result.update(
        body=unbounded.get_object(Bucket=bucket, Key="obj")["Body"].read()), daemon=True)
    s3_store.pause()
    try:
        with pytest.raises(ReadTimeoutError):  # the kernel accepts, nobody answers
            bounded.head_object(Bucket=bucket, Key="obj")
        waiter.start()
        waiter.join(1.5)
        assert waiter.is_alive() and not result  # still waiting on the stopped store
    finally:
        s3_store.resume()
    waiter.join(30)
    assert result["body"] == body  # the pending call completes after SIGCONT
    assert bounded.get_object(Bucket=bucket, Key="obj")["Body"].read() == body
