"""Every AWS API operation gpuhire calls, per service and per caller: the contract with terraform/.

The tables hold boto3 operation names (API names as botocore reports them, e.g. `RunInstances`);
terraform's IAM documents are checked against them (tests/terraform/test_tf_policy.py), so each
allows exactly these and nothing else.

With the launcher's (the user's) credentials:
- `AWS_OPERATIONS`: launcher/providers/aws*.py. A test records every call the provider makes
  under moto and asserts the two are equal.
- `STAGING_OPERATIONS`: launcher/providers/aws/staging.py (data and checkpoints through S3).
- `FLEET_OPERATIONS`: launcher/infer/queue.py (`gpuhire infer` across spot instances: SQS + S3).

With the instance role, on the box:
- `WORKER_OPERATIONS`: jobs/fleet/worker.py (the fleet's inference worker).
- `IMAGE_PULL_ACTIONS`: what `docker pull` of the trainer image from ECR needs.

`*_IMPLIED_ACTIONS` are IAM actions that no API call names but AWS checks anyway:
- `ec2:CreateTags` is authorised for every create call that carries `TagSpecifications`
  (RunInstances, ImportKeyPair, CreateSecurityGroup), see
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html
- `iam:PassRole` is checked when RunInstances attaches the instance profile
  (`[aws] instance_profile`), see
  https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html
- `sqs:TagQueue` is checked when CreateQueue carries tags, see
  https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html
- `s3:PutObjectTagging` is checked when PutObject carries a tag (`Tagging`), see
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
- `s3:ListBucket` decides what HeadObject/GetObject answer for a missing key: 404 with it, 403
  (AccessDenied) without. Staging and the worker ask whether a key exists, so they need it,
  limited to their prefixes in terraform, see
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html

`iam_action()` maps an operation to the IAM action that authorises it (they differ for S3
HeadObject and multipart uploads and for the SQS batch calls).
"""

from __future__ import annotations

AWS_OPERATIONS: dict[str, frozenset[str]] = {
    "ec2": frozenset(
        {
            # offers
            "DescribeSpotPriceHistory",
            "DescribeInstanceTypeOfferings",
            # launch
            "DescribeImages",
            "DescribeSubnets",
            "ImportKeyPair",
            "CreateSecurityGroup",
            "AuthorizeSecurityGroupIngress",
            "RunInstances",
            # describe, status, stop, gc
            "DescribeInstances",
            "TerminateInstances",
            "DescribeKeyPairs",
            "DeleteKeyPair",
            "DescribeSecurityGroups",
            "DeleteSecurityGroup",
        }
    ),
    "ssm": frozenset({"GetParameter"}),  # the Deep Learning AMI id
    "sts": frozenset({"GetCallerIdentity"}),  # credentials check and the gpuhire:owner tag
}

AWS_IMPLIED_ACTIONS: dict[str, frozenset[str]] = {
    "ec2": frozenset({"CreateTags"}),
    "iam": frozenset({"PassRole"}),
}


# boto3's managed transfers (s3transfer): upload_file is one PutObject, or a multipart upload
# above 8 MiB (aborted if a part fails); download_file asks HeadObject for the size first.
UPLOAD_FILE = frozenset(
    {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"}
)
DOWNLOAD_FILE = frozenset({"HeadObject", "GetObject"})

STAGING_OPERATIONS: dict[str, frozenset[str]] = {
    # head_object (is the data there?), upload_file, put_object (the manifest), and GetObject:
    # the presigned URLs the box fetches are signed with the launcher's credentials.
    "s3": frozenset({"HeadObject", "GetObject"}) | UPLOAD_FILE,
}
STAGING_IMPLIED_ACTIONS: dict[str, frozenset[str]] = {
    "s3": frozenset({"PutObjectTagging", "ListBucket"}),  # checkpoints are tagged; 404 not 403
}

FLEET_OPERATIONS: dict[str, frozenset[str]] = {
    "sqs": frozenset(
        {
            "CreateQueue",  # gpuhire-<job>-work, -dead and -done, tagged gpuhire:job
            "GetQueueAttributes",  # the dead-letter queue's ARN; progress counts
            "SendMessageBatch",  # the page batches
            "ReceiveMessage",  # done reports, dead letters
            "DeleteMessageBatch",
            "DeleteQueue",
            "GetQueueUrl",  # gc and a rerun find a dead fleet's queues by name
        }
    ),
    # jobs/<job>/model.* (.pt, .mlmodel, .safetensors), segment/ and pages/ up (upload_file),
    # results/ down (download_file); a rerun lists results/ an orphaned fleet wrote, gc lists
    # and deletes a dead fleet's model and pages
    "s3": UPLOAD_FILE | DOWNLOAD_FILE | frozenset({"ListObjectsV2", "DeleteObjects"}),
}
FLEET_IMPLIED_ACTIONS: dict[str, frozenset[str]] = {
    "sqs": frozenset({"TagQueue"}),
    "s3": frozenset({"PutObjectTagging"}),  # model and pages are tagged gpuhire:kind=fleet
}

WORKER_OPERATIONS: dict[str, frozenset[str]] = {
    "sqs": frozenset({"ReceiveMessage", "ChangeMessageVisibility", "DeleteMessage", "SendMessage"}),
    # model.*, segment/ and pages/ down, results/ up; head_object: is a page's result there already?
    "s3": DOWNLOAD_FILE | UPLOAD_FILE,
}
WORKER_IMPLIED_ACTIONS: dict[str, frozenset[str]] = {
    "s3": frozenset({"ListBucket", "PutObjectTagging"}),  # 404 not 403; results tagged gpuhire:kind=fleet
}

# `docker pull` from the ECR repository (the registry protocol, not a boto3 call of ours), as in
# https://docs.aws.amazon.com/AmazonECR/latest/userguide/security-iam-awsmanpol.html (its ReadOnly policy)
IMAGE_PULL_ACTIONS: dict[str, frozenset[str]] = {
    "ecr": frozenset(
        {"GetAuthorizationToken", "BatchGetImage", "GetDownloadUrlForLayer", "BatchCheckLayerAvailability"}
    ),
}

# Operations authorised by an IAM action of another name; every other operation's action is
# its own name. S3: https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
# SQS batch calls: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html
_ACTION_OF: dict[tuple[str, str], str] = {
    ("s3", "HeadObject"): "GetObject",
    ("s3", "CreateMultipartUpload"): "PutObject",
    ("s3", "UploadPart"): "PutObject",
    ("s3", "CompleteMultipartUpload"): "PutObject",
    ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "DeleteObjects"): "DeleteObject",
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
}


def iam_action(service: str, operation: str) -> str:
    """The IAM action (`service:Action`) that authorises one API operation."""
    return f"{service}:{_ACTION_OF.get((service, operation), operation)}"


def _actions(operations: tuple[dict[str, frozenset[str]], ...],
             implied: tuple[dict[str, frozenset[str]], ...]) -> list[str]:
    found = {iam_action(service, op) for table in operations for service, ops in table.items() for op in ops}
    found |= {f"{service}:{action}" for table in implied for service, actions in table.items()
              for action in actions}
    return sorted(found)


def iam_actions() -> list[str]:
    """All IAM actions the launcher needs (the user policy), as `service:Action`, sorted."""
    return _actions((AWS_OPERATIONS, STAGING_OPERATIONS, FLEET_OPERATIONS),
                    (AWS_IMPLIED_ACTIONS, STAGING_IMPLIED_ACTIONS, FLEET_IMPLIED_ACTIONS))


def worker_iam_actions() -> list[str]:
    """All IAM actions the box needs (the instance role): the fleet worker and the image pull."""
    return _actions((WORKER_OPERATIONS,), (WORKER_IMPLIED_ACTIONS, IMAGE_PULL_ACTIONS))
