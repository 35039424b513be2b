"""moto's server (S3, IAM, Lambda) for the file and serverless probe tests.

``start_moto(enforce_auth=True)`` sets the server up without authentication
(an IAM user with an allow-all policy and its access key, a bucket with a few
objects), then turns IAM authentication on (``POST /moto-api/reset-auth`` with
``0``): from then on moto checks every request's signature and key, so a wrong
key id or secret gets a real ``InvalidAccessKeyId`` / ``SignatureDoesNotMatch``.
With ``enforce_auth=False`` any credentials are accepted (moto's default).
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from tests.types.peers_vector import VENV_BIN, ServerProcess, free_port, http_ok, start_process

REGION = "eu-west-1"
BUCKET = "data"
PREFIX = "reports"
# Under PREFIX: two objects and one sub-folder; outside it: one object.
OBJECTS = {f"{PREFIX}/a.csv": b"a", f"{PREFIX}/b.csv": b"b", f"{PREFIX}/2026/c.csv": b"c", "top.txt": b"t"}
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def start_moto(*, enforce_auth: bool) -> ServerProcess:
    """moto_server on a free port, with a bucket; ``info`` holds the endpoint and credentials."""
    folder = Path(tempfile.mkdtemp(prefix="connectord-moto-", dir="/tmp"))
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    args = [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    server = start_process(args, folder, port, lambda: http_ok(f"{endpoint}/moto-api/"))
    try:
        server.info.update(_set_up(endpoint))
        if enforce_auth:
            request = urllib.request.Request(
                f"{endpoint}/moto-api/reset-auth",
                data=b"0",
                method="POST",
                headers={"Content-Type": "text/plain"},
            )
            urllib.request.urlopen(request, timeout=10).close()
    except Exception:
        server.stop()
        raise
    server.info["endpoint"] = endpoint
    return server


def client(server: ServerProcess, service: str, **overrides: Any) -> Any:
    """A boto3 client of the moto server with its working credentials."""
    import boto3

    args = {
        "endpoint_url": server.info["endpoint"],
        "region_name": REGION,
        "aws_access_key_id": server.info["access_key_id"],
        "aws_secret_access_key": server.info["secret_access_key"],
        **overrides,
    }
    return boto3.client(service, **args)


def _set_up(endpoint: str) -> dict[str, Any]:
    import boto3

    plain = {
        "endpoint_url": endpoint,
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    iam = boto3.client("iam", **plain)
    iam.create_user(UserName="probe")
    iam.put_user_policy(UserName="probe", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL))
    key = iam.create_access_key(UserName="probe")["AccessKey"]
    s3 = boto3.client("s3", **plain)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    for name, body in OBJECTS.items():
        s3.put_object(Bucket=BUCKET, Key=name, Body=body)
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"], "plain": plain}


_SHARED: dict[bool, ServerProcess] = {}


def shared_moto(*, enforce_auth: bool) -> ServerProcess:
    """One moto server of each kind per test session, shared by the file and serverless tests
    (fixtures in two modules cannot share a session fixture without a conftest)."""
    if enforce_auth not in _SHARED:
        _SHARED[enforce_auth] = start_moto(enforce_auth=enforce_auth)
    return _SHARED[enforce_auth]


def stop_shared_moto() -> None:
    """Stop the shared servers; session fixtures call it at the end of the session."""
    while _SHARED:
        _SHARED.popitem()[1].stop()
