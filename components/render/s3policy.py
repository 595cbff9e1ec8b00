"""S3 policy documents (plain JSON, no Pulumi)."""

from __future__ import annotations

import json

_ACTIONS = [
    "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:GetBucketLocation",
    "s3:ListMultipartUploadParts", "s3:ListBucketMultipartUploads", "s3:AbortMultipartUpload",
    "s3:GetObjectVersion", "s3:ListBucketVersions", "s3:GetObjectRetention", "s3:GetBucketObjectLockConfiguration",
]


def bucket_policy(bucket: str) -> str:
    """Read/write on one bucket and its objects, nothing else (no bucket deletion, no lock changes)."""
    return json.dumps(
        {
            "Statement": [
                {
                    "Sid": "socle-only-this-bucket",
                    "Effect": "Allow",
                    "Action": _ACTIONS,
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                }
            ]
        },
        sort_keys=True,
    )


def ovh_s3_endpoint(region: str) -> str:
    return f"https://s3.{region.lower()}.io.cloud.ovh.net"
