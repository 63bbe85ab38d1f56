#!/usr/bin/env python3
"""Seed a moto server with a deterministic demo organisation for cloudwarden.

The script resets the server, creates an organisation with a management and a member ("workloads")
account, fills both accounts in two regions with EC2/EBS/EIP/RDS/logs/S3 resources whose tags follow
the team/env/owner scheme with deliberate gaps, queues Cost Explorer results and writes CPU metrics.
Everything it created is written to a JSON "truth" file that tests compare the daemon's view against.

All randomness comes from random.Random(--seed); moto's own id generator is seeded through
/moto-api/seed, so the same --seed/--scale/--days yield the same ids, tags and amounts on every run.
Dates (billing window, metric timestamps, creation times) follow the wall clock.
"""

from __future__ import annotations

import argparse
import calendar
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

# Creation timestamps come back from moto without a zone and botocore reads them as local time;
# pin the process to UTC so they stay UTC.
os.environ["TZ"] = "UTC"
if hasattr(time, "tzset"):
    time.tzset()

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

MANAGEMENT_ACCOUNT = "123456789012"  # moto's default account for the "testing" credentials
REGIONS = ["us-east-1", "eu-west-1"]
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
ROLE_NAME = "CloudwardenReadOnly"
BOOTSTRAP_ROLE = "OrganizationAccountAccessRole"  # created by moto (and AWS) in every new org account
SESSION_NAME = "cloudwarden-seed"
# Any id is accepted: moto only validates AMIs when MOTO_ENABLE_AMI_VALIDATION is set. Registering an
# image is avoided on purpose because moto backs it with an extra, account-owned snapshot.
IMAGE_ID = "ami-0c1d2e3f4a5b6c7d8"

READ_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ec2:Describe*",
                "rds:Describe*",
                "rds:ListTagsForResource",
                "logs:Describe*",
                "logs:ListTagsForResource",
                "logs:ListTagsLogGroup",
                "s3:ListAllMyBuckets",
                "s3:GetBucketLocation",
                "s3:GetBucketTagging",
                "cloudwatch:GetMetricData",
                "cloudwatch:GetMetricStatistics",
                "cloudwatch:ListMetrics",
                "tag:GetResources",
            ],
            "Resource": "*",
        }
    ],
}

TEAMS = ["platform", "data", "web", "payments"]
ENVS = ["prod", "staging", "dev"]
OWNERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
EMAIL_DOMAIN = "example.com"
SCHEME_KEYS = ["team", "env", "owner"]
INVALID_VALUES = {
    "team": ["unknown", "marketing"],
    "env": ["prodd", "production", "qa"],
    "owner": ["alice", "n/a", "bob@"],
}
TAG_CASES = [
    ("valid", 55),
    ("missing_key", 15),
    ("wrong_case", 8),
    ("invalid_value", 7),
    ("untagged", 15),
]

INSTANCE_TYPES = [
    ("t3.micro", 6),
    ("t3.small", 5),
    ("t3.medium", 5),
    ("t3.large", 3),
    ("m5.large", 5),
    ("m5.xlarge", 3),
    ("c5.large", 3),
    ("c5.xlarge", 3),
    ("r5.large", 2),
]
APPS = ["orders", "checkout", "catalog", "search", "ledger", "reports", "auth", "ingest", "billing"]

SERVICES = [
    "Amazon Elastic Compute Cloud - Compute",
    "Amazon Simple Storage Service",
    "Amazon Relational Database Service",
    "AmazonCloudWatch",
    "EC2 - Other",
]
# Base daily unblended cost in USD: (management account, member account).
SERVICE_BASE = {
    "Amazon Elastic Compute Cloud - Compute": (42.0, 185.0),
    "Amazon Simple Storage Service": (7.5, 26.0),
    "Amazon Relational Database Service": (18.0, 64.0),
    "AmazonCloudWatch": (2.6, 9.4),
    "EC2 - Other": (6.8, 31.0),
}
# Saturday / Sunday multiplier per service (storage barely moves at weekends).
WEEKEND_FACTOR = {
    "Amazon Elastic Compute Cloud - Compute": (0.70, 0.66),
    "Amazon Simple Storage Service": (0.97, 0.96),
    "Amazon Relational Database Service": (0.86, 0.84),
    "AmazonCloudWatch": (0.78, 0.75),
    "EC2 - Other": (0.90, 0.88),
}
# AmortizedCost / UnblendedCost: reservations and savings plans spread upfront fees.
AMORTIZED_RATIO = {
    "Amazon Elastic Compute Cloud - Compute": 0.91,
    "Amazon Simple Storage Service": 1.0,
    "Amazon Relational Database Service": 0.94,
    "AmazonCloudWatch": 1.0,
    "EC2 - Other": 1.0,
}
# The test-bed rule set (examples/rules/testbed/ plus the budgets file --budget-rules writes): the truth's
# expected findings are what these rules must find in what the seed planted.
TAG_RULE = "ownership"
OWNER_PATTERN = r"[a-z]+@example\.com"
EXEMPT_TAG = "cloudwarden:exempt"
PROTECT_TAG = "cloudwarden:protect"
BUDGET_ACTUAL_PERCENT = [50, 80, 100]
BUDGET_FORECAST_PERCENT = [100]
# Tags of the planted resources that comply with the tagging rule.
PLANTED_VALID = {"team": "platform", "env": "dev", "owner": "alice@example.com"}
MONTHLY_GROWTH = 0.03
ANOMALY_FACTOR = 4.0
METRICS = ["UnblendedCost", "AmortizedCost"]


def scaled(base: int, scale: float) -> int:
    """Round half up, and keep at least one of everything while the scale is positive."""
    if scale <= 0:
        return 0
    return max(1, int(base * scale + 0.5))


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith("aws:")}


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tag_dict(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def classify(tags: dict[str, str]) -> str:
    """The tag_case of a tag set. Precedence: untagged, wrong_case, missing_key, invalid_value, valid."""
    tags = user_tags(tags)
    if not tags:
        return "untagged"
    if any(k.lower() in SCHEME_KEYS and k not in SCHEME_KEYS for k in tags):
        return "wrong_case"
    if any(k not in tags for k in SCHEME_KEYS):
        return "missing_key"
    owner_ok = tags["owner"].endswith("@" + EMAIL_DOMAIN) and len(tags["owner"]) > len(EMAIL_DOMAIN) + 1
    if tags["team"] not in TEAMS or tags["env"] not in ENVS or not owner_ok:
        return "invalid_value"
    return "valid"


class TagPlanner:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def plan(self) -> tuple[str, dict[str, str]]:
        rng = self.rng
        case = rng.choices([c for c, _ in TAG_CASES], weights=[w for _, w in TAG_CASES])[0]
        if case == "untagged":
            return case, {}
        tags = {
            "team": rng.choice(TEAMS),
            "env": rng.choice(ENVS),
            "owner": f"{rng.choice(OWNERS)}@{EMAIL_DOMAIN}",
        }
        if case == "missing_key":
            del tags[rng.choice(SCHEME_KEYS)]
        elif case == "wrong_case":
            key = rng.choice(SCHEME_KEYS)
            variant = rng.choice([key.capitalize(), key.upper()])
            tags[variant] = tags.pop(key)
        elif case == "invalid_value":
            key = rng.choice(SCHEME_KEYS)
            tags[key] = rng.choice(INVALID_VALUES[key])
        return case, tags


class Moto:
    """Clients for one endpoint, cached per (credentials, service, region)."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint.rstrip("/")
        self.config = Config(
            retries={"total_max_attempts": 1},  # a retried create would duplicate a resource
            s3={"addressing_style": "path"},
            connect_timeout=10,
            read_timeout=120,
        )
        self._clients: dict[tuple[str, str, str], Any] = {}

    def client(self, service: str, region: str, creds: dict[str, str] | None = None) -> Any:
        creds = creds or {"AccessKeyId": ACCESS_KEY, "SecretAccessKey": SECRET_KEY}
        key = (creds["AccessKeyId"], service, region)
        if key not in self._clients:
            self._clients[key] = boto3.client(
                service,
                region_name=region,
                endpoint_url=self.endpoint,
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds.get("SessionToken"),
                config=self.config,
            )
        return self._clients[key]

    def api(self, path: str, body: Any = None, query: dict[str, Any] | None = None) -> int:
        url = f"{self.endpoint}/moto-api/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status
        except urllib.error.URLError as exc:
            raise SystemExit(f"seed: moto API call {path} at {self.endpoint} failed: {exc}") from exc


class Seeder:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.tags = TagPlanner(self.rng)
        self.moto = Moto(args.endpoint)
        self.now = datetime.now(timezone.utc)
        self.today = self.now.date()
        self.accounts: list[dict[str, Any]] = []
        self.creds: dict[str, dict[str, str] | None] = {}
        # Planned tag case per (account, region, resource id); checked against what moto reports.
        self.planned: dict[tuple[str, str, str], str] = {}
        self.details: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.running: dict[tuple[str, str], list[str]] = {}
        self.checks: dict[str, Any] = {}

    # -- organisation -----------------------------------------------------------------------------

    def setup_organisation(self) -> None:
        org = self.moto.client("organizations", "us-east-1")
        org.create_organization(FeatureSet="ALL")
        status = org.create_account(Email=f"workloads@{EMAIL_DOMAIN}", AccountName="workloads")[
            "CreateAccountStatus"
        ]
        for _ in range(50):
            if status["State"] != "IN_PROGRESS":
                break
            time.sleep(0.1)
            status = org.describe_create_account_status(CreateAccountRequestId=status["Id"])[
                "CreateAccountStatus"
            ]
        if status["State"] != "SUCCEEDED":
            raise SystemExit(f"seed: create_account did not succeed: {status}")
        member = status["AccountId"]
        role_arn = f"arn:aws:iam::{member}:role/{ROLE_NAME}"

        sts = self.moto.client("sts", "us-east-1")
        bootstrap = sts.assume_role(
            RoleArn=f"arn:aws:iam::{member}:role/{BOOTSTRAP_ROLE}", RoleSessionName=SESSION_NAME
        )["Credentials"]
        iam = self.moto.client("iam", "us-east-1", bootstrap)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{MANAGEMENT_ACCOUNT}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        iam.create_role(
            RoleName=ROLE_NAME,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description="Read-only access for the cloudwarden daemon",
        )
        # An inline policy: moto only knows AWS managed policies (ReadOnlyAccess) when the server runs
        # with MOTO_IAM_LOAD_MANAGED_POLICIES=true. moto does not enforce IAM either way.
        iam.put_role_policy(RoleName=ROLE_NAME, PolicyName="cloudwarden-read",
                            PolicyDocument=json.dumps(READ_POLICY))

        member_creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=SESSION_NAME)["Credentials"]
        who = self.moto.client("sts", "us-east-1", member_creds).get_caller_identity()
        if who["Account"] != member:
            raise SystemExit(f"seed: assumed role resolved to account {who['Account']}, expected {member}")
        self.checks["assumed_identity"] = who["Arn"]

        self.accounts = [
            {"id": MANAGEMENT_ACCOUNT, "name": "management", "role_arn": None},
            {"id": member, "name": "workloads", "role_arn": role_arn},
        ]
        self.creds = {MANAGEMENT_ACCOUNT: None, member: member_creds}

    def c(self, service: str, account: str, region: str) -> Any:
        return self.moto.client(service, region, self.creds[account])

    def remember(self, account: str, region: str, rid: str, case: str, **details: Any) -> None:
        self.planned[(account, region, rid)] = case
        self.details[(account, region, rid)] = details

    # -- resources --------------------------------------------------------------------------------

    def seed_region(self, account: str, region: str) -> None:
        rng = self.rng
        scale = self.args.scale
        ec2 = self.c("ec2", account, region)
        zones = [f"{region}{z}" for z in "abc"]

        # EC2 instances, one reservation each, with a sized root volume.
        instances: list[tuple[str, str]] = []  # (instance id, zone)
        for i in range(scaled(rng.randint(55, 65), scale)):
            case, tags = self.tags.plan()
            if tags and rng.random() < 0.6:
                tags["Name"] = f"{rng.choice(APPS)}-{i:02d}"
            itype = rng.choices([t for t, _ in INSTANCE_TYPES], weights=[w for _, w in INSTANCE_TYPES])[0]
            zone = rng.choice(zones)
            root_size = rng.choice([8, 8, 20, 30, 50, 100])
            root_type = rng.choice(["gp3", "gp3", "gp2"])
            propagate = bool(tags) and rng.random() < 0.5
            spec = []
            if tags:
                spec.append({"ResourceType": "instance", "Tags": tag_list(tags)})
            if propagate:
                spec.append({"ResourceType": "volume", "Tags": tag_list(tags)})
            kwargs: dict[str, Any] = {}
            if spec:
                kwargs["TagSpecifications"] = spec
            resp = ec2.run_instances(
                ImageId=IMAGE_ID,
                MinCount=1,
                MaxCount=1,
                InstanceType=itype,
                Placement={"AvailabilityZone": zone},
                BlockDeviceMappings=[
                    {
                        "DeviceName": "/dev/xvda",
                        "Ebs": {"VolumeSize": root_size, "VolumeType": root_type, "DeleteOnTermination": True},
                    }
                ],
                **kwargs,
            )
            inst = resp["Instances"][0]
            iid = inst["InstanceId"]
            root_ids = [m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", []) if "Ebs" in m]
            self.remember(account, region, iid, case, instance_type=itype, availability_zone=zone,
                          volume_ids=root_ids)
            for vid in root_ids:
                self.remember(account, region, vid, case if propagate else "untagged", root=True,
                              instance_id=iid, volume_type=root_type, size_gb=root_size)
            instances.append((iid, zone))

        n_stop = int(len(instances) * 0.2 + 0.5) if len(instances) > 1 else 0
        stopped = set(rng.sample([iid for iid, _ in instances], n_stop))
        if stopped:
            ec2.stop_instances(InstanceIds=sorted(stopped))
        running = [iid for iid, _ in instances if iid not in stopped]
        self.running[(account, region)] = running
        zone_of = dict(instances)

        # Extra EBS volumes: half attached (to distinct instances), half left available.
        n_vol = scaled(rng.randint(18, 22), scale)
        targets = rng.sample([iid for iid, _ in instances], min(n_vol // 2, len(instances)))
        volume_pool: list[str] = []
        for v in range(n_vol):
            case, tags = self.tags.plan()
            vtype = rng.choice(["gp3", "gp3", "gp2", "io1", "st1", "sc1"])
            size = rng.choice([500, 1000, 2000]) if vtype in ("st1", "sc1") else rng.choice([10, 50, 100, 200, 500])
            target = targets[v] if v < len(targets) else None
            zone = zone_of[target] if target else rng.choice(zones)
            kwargs = {}
            if tags:
                kwargs["TagSpecifications"] = [{"ResourceType": "volume", "Tags": tag_list(tags)}]
            if vtype == "io1":
                kwargs["Iops"] = rng.choice([1000, 3000, 5000])
            vol = ec2.create_volume(AvailabilityZone=zone, Size=size, VolumeType=vtype, **kwargs)
            vid = vol["VolumeId"]
            if target:
                ec2.attach_volume(VolumeId=vid, InstanceId=target, Device="/dev/sdf")
            self.remember(account, region, vid, case, root=False, instance_id=target, volume_type=vtype,
                          size_gb=size)
            volume_pool.append(vid)
        volume_pool += [vid for (a, r, vid), d in self.details.items()
                        if a == account and r == region and d.get("root")]

        # Snapshots: most of existing volumes, a few of volumes that are deleted right after.
        n_snap = scaled(rng.randint(9, 11), scale)
        n_orphan = int(n_snap * 0.3 + 0.5)
        for s in range(n_snap):
            case, tags = self.tags.plan()
            orphan = s >= n_snap - n_orphan
            if orphan:
                temp = ec2.create_volume(AvailabilityZone=rng.choice(zones), Size=rng.choice([20, 50, 100]),
                                         VolumeType="gp3")
                source = temp["VolumeId"]
            else:
                source = rng.choice(volume_pool)
            kwargs = {}
            if tags:
                kwargs["TagSpecifications"] = [{"ResourceType": "snapshot", "Tags": tag_list(tags)}]
            snap = ec2.create_snapshot(VolumeId=source, Description=f"backup of {source}", **kwargs)
            if orphan:
                ec2.delete_volume(VolumeId=source)
            self.remember(account, region, snap["SnapshotId"], case, volume_id=source)

        # Elastic IPs: half associated with distinct running instances.
        n_eip = scaled(rng.randint(7, 9), scale)
        owners = rng.sample(running, min(n_eip // 2, len(running)))
        for e in range(n_eip):
            case, tags = self.tags.plan()
            kwargs = {"Domain": "vpc"}
            if tags:
                kwargs["TagSpecifications"] = [{"ResourceType": "elastic-ip", "Tags": tag_list(tags)}]
            alloc = ec2.allocate_address(**kwargs)
            target = owners[e] if e < len(owners) else None
            if target:
                ec2.associate_address(AllocationId=alloc["AllocationId"], InstanceId=target)
            self.remember(account, region, alloc["AllocationId"], case, instance_id=target,
                          public_ip=alloc["PublicIp"])

        # RDS instances.
        rds = self.c("rds", account, region)
        for d in range(scaled(2, scale)):
            case, tags = self.tags.plan()
            engine = rng.choice(["postgres", "mysql"])
            ident = f"{rng.choice(APPS)}-{engine}-{d + 1}"
            klass = rng.choice(["db.t3.medium", "db.m5.large", "db.r5.large"])
            storage = rng.choice([20, 100, 250, 500])
            kwargs = {"Tags": tag_list(tags)} if tags else {}
            rds.create_db_instance(
                DBInstanceIdentifier=ident,
                DBInstanceClass=klass,
                Engine=engine,
                AllocatedStorage=storage,
                MasterUsername="demoadmin",
                MasterUserPassword="demo-password-1",
                **kwargs,
            )
            self.remember(account, region, ident, case, engine=engine, db_instance_class=klass,
                          allocated_storage_gb=storage)

        # CloudWatch log groups, about half with a retention policy.
        logs = self.c("logs", account, region)
        for g in range(scaled(rng.randint(7, 9), scale)):
            case, tags = self.tags.plan()
            app = rng.choice(APPS)
            name = rng.choice([f"/aws/lambda/{app}-handler-{g}", f"/ecs/{app}-{g}", f"/app/{app}/access-{g}"])
            retention = rng.choice([None, None, None, 7, 14, 30, 90, 365])
            kwargs = {"tags": tags} if tags else {}
            logs.create_log_group(logGroupName=name, **kwargs)
            if retention:
                logs.put_retention_policy(logGroupName=name, retentionInDays=retention)
            self.remember(account, region, name, case)

        # S3 buckets (names are global, so they carry account and region).
        s3 = self.c("s3", account, region)
        for b in range(scaled(3, scale)):
            case, tags = self.tags.plan()
            name = f"cw-demo-{account}-{region}-{b}"
            if region == "us-east-1":
                s3.create_bucket(Bucket=name)
            else:
                s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
            if tags:
                s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tag_list(tags)})
            self.remember(account, region, name, case)

    # -- planted resources ------------------------------------------------------------------------

    def plant(self) -> list[dict[str, Any]]:
        """Resources placed on purpose in the management account's first region, each breaking one rule of
        the test-bed rule set, complying with all of them, or exempt/protected. Created after the random
        resources and the metrics, so those stay as they were; no randomness."""
        account, region = MANAGEMENT_ACCOUNT, REGIONS[0]
        ec2 = self.c("ec2", account, region)
        zone = f"{region}a"
        planted: list[dict[str, Any]] = []

        def note(name: str, rtype: str, rid: str, arn: str, purpose: str, tags: dict[str, str],
                 **details: Any) -> None:
            self.remember(account, region, rid, classify(tags), **details)
            planted.append({"name": name, "arn": arn, "resource_type": rtype, "purpose": purpose})

        def instance(name: str, tags: dict[str, str], purpose: str) -> tuple[str, str]:
            tags = {**tags, "Name": name}
            inst = ec2.run_instances(
                ImageId=IMAGE_ID, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                Placement={"AvailabilityZone": zone},
                BlockDeviceMappings=[{"DeviceName": "/dev/xvda",
                                      "Ebs": {"VolumeSize": 8, "VolumeType": "gp3", "DeleteOnTermination": True}}],
                TagSpecifications=[{"ResourceType": "instance", "Tags": tag_list(tags)},
                                   {"ResourceType": "volume", "Tags": tag_list(PLANTED_VALID)}],
            )["Instances"][0]
            iid = inst["InstanceId"]
            root = [m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", []) if "Ebs" in m]
            note(name, "ec2:instance", iid, f"arn:aws:ec2:{region}:{account}:instance/{iid}", purpose, tags,
                 instance_type="t3.micro", availability_zone=zone, volume_ids=root)
            for vid in root:
                note(f"{name}-root", "ec2:volume", vid, f"arn:aws:ec2:{region}:{account}:volume/{vid}",
                     f"root volume of {name}: complies", PLANTED_VALID, root=True, instance_id=iid,
                     volume_type="gp3", size_gb=8)
            return iid, root[0]

        compliant, compliant_root = instance("planted-compliant", PLANTED_VALID, "complies with every rule")
        stopped, _ = instance("planted-stopped", PLANTED_VALID, "cleanup stopped_instance")
        ec2.stop_instances(InstanceIds=[stopped])
        instance("planted-exempt", {"team": "platform", EXEMPT_TAG: "true"},
                 f"tagging: exempt by {EXEMPT_TAG} (without env and owner)")
        instance("planted-missing-owner", {"team": "web", "env": "staging"},
                 f"tagging {TAG_RULE}: owner missing (the test adds it and the finding resolves)")
        instance("planted-bad-owner", {**PLANTED_VALID, "owner": "ops-team"},
                 f"tagging {TAG_RULE}: owner does not match the pattern")

        for name, tags, purpose in [
            ("planted-unattached", PLANTED_VALID, "cleanup unattached_volume"),
            ("planted-protected", {**PLANTED_VALID, PROTECT_TAG: "true"}, f"unattached but protected by {PROTECT_TAG}"),
        ]:
            vid = ec2.create_volume(AvailabilityZone=zone, Size=50, VolumeType="gp3",
                                    TagSpecifications=[{"ResourceType": "volume", "Tags": tag_list(tags)}])["VolumeId"]
            note(name, "ec2:volume", vid, f"arn:aws:ec2:{region}:{account}:volume/{vid}", purpose, tags,
                 root=False, instance_id=None, volume_type="gp3", size_gb=50)

        temp = ec2.create_volume(AvailabilityZone=zone, Size=20, VolumeType="gp3")["VolumeId"]
        for name, source, purpose in [
            ("planted-orphan-snapshot", temp, "cleanup orphan_snapshot (its volume is deleted)"),
            ("planted-snapshot", compliant_root, "snapshot of a live volume: complies"),
        ]:
            sid = ec2.create_snapshot(VolumeId=source, Description=f"backup of {source}",
                                      TagSpecifications=[{"ResourceType": "snapshot",
                                                          "Tags": tag_list(PLANTED_VALID)}])["SnapshotId"]
            note(name, "ec2:snapshot", sid, f"arn:aws:ec2:{region}::snapshot/{sid}", purpose, PLANTED_VALID,
                 volume_id=source)
        ec2.delete_volume(VolumeId=temp)

        for name, target, purpose in [("planted-unassociated-eip", None, "cleanup unassociated_eip"),
                                      ("planted-associated-eip", compliant, "associated: complies")]:
            alloc = ec2.allocate_address(Domain="vpc", TagSpecifications=[
                {"ResourceType": "elastic-ip", "Tags": tag_list(PLANTED_VALID)}])
            if target:
                ec2.associate_address(AllocationId=alloc["AllocationId"], InstanceId=target)
            aid = alloc["AllocationId"]
            note(name, "ec2:elastic-ip", aid, f"arn:aws:ec2:{region}:{account}:elastic-ip/{aid}", purpose,
                 PLANTED_VALID, instance_id=target, public_ip=alloc["PublicIp"])

        logs = self.c("logs", account, region)
        for name, tags, retention, purpose in [
            ("/planted/no-retention", PLANTED_VALID, None, "cleanup log_group_without_retention"),
            ("/planted/bad-env", {**PLANTED_VALID, "env": "production"}, 30,
             f"tagging {TAG_RULE}: env not in the allowed list"),
        ]:
            logs.create_log_group(logGroupName=name, tags=tags)
            if retention:
                logs.put_retention_policy(logGroupName=name, retentionInDays=retention)
            note(name, "logs:log-group", name, f"arn:aws:logs:{region}:{account}:log-group:{name}", purpose, tags)

        bucket = f"cw-testbed-planted-untagged-{account}"
        self.c("s3", account, region).create_bucket(Bucket=bucket)
        note(bucket, "s3:bucket", bucket, f"arn:aws:s3:::{bucket}", f"cleanup untagged and tagging {TAG_RULE}", {})
        return planted

    # -- metrics ----------------------------------------------------------------------------------

    def seed_metrics(self) -> dict[str, Any]:
        rng = self.rng
        end = self.now.replace(second=0, microsecond=0)
        end -= timedelta(minutes=end.minute % 5)
        stamps = [end - timedelta(minutes=5 * k) for k in range(35, -1, -1)]
        series = []
        for acct in self.accounts:
            for region in REGIONS:
                running = self.running.get((acct["id"], region), [])
                chosen = rng.sample(running, min(len(running), scaled(10, self.args.scale)))
                cw = self.c("cloudwatch", acct["id"], region)
                for iid in sorted(chosen):
                    profile = rng.choices(["idle", "normal", "busy"], weights=[3, 5, 2])[0]
                    base, amp, noise = {"idle": (2.0, 0.8, 0.6), "normal": (30.0, 10.0, 4.0),
                                        "busy": (78.0, 9.0, 5.0)}[profile]
                    phase = rng.uniform(0, 2 * math.pi)
                    points = []
                    for j, ts in enumerate(stamps):
                        v = base + amp * math.sin(2 * math.pi * j / len(stamps) + phase) + rng.uniform(-noise, noise)
                        points.append((ts, round(min(100.0, max(0.0, v)), 2)))
                    put_cpu(cw, iid, points)
                    values = [v for _, v in points]
                    series.append({
                        "account": acct["id"],
                        "region": region,
                        "instance_id": iid,
                        "profile": profile,
                        "average": round(sum(values) / len(values), 4),
                        "maximum": max(values),
                        "datapoints": [[iso(ts), v] for ts, v in points],
                    })
        # One more instance gets a long steady CPU series whose newest point is a spike, for the metric
        # anomaly detector: 320 points (more than its 288 points of probation). A stream of its own, so the
        # other series do not change.
        anomaly = None
        arng = random.Random(f"anomaly:{self.args.seed}")
        taken = {s["instance_id"] for s in series}
        for acct in self.accounts:
            spare = sorted(i for i in self.running.get((acct["id"], REGIONS[0]), []) if i not in taken)
            if not spare:
                continue
            iid = spare[0]
            long_stamps = [end - timedelta(minutes=5 * k) for k in range(319, -1, -1)]
            points = [(ts, round(20.0 + arng.uniform(-2.0, 2.0), 2)) for ts in long_stamps[:-1]]
            points.append((long_stamps[-1], 95.0))
            cw = self.c("cloudwatch", acct["id"], REGIONS[0])
            put_cpu(cw, iid, points)
            anomaly = {
                "account": acct["id"],
                "region": REGIONS[0],
                "instance_id": iid,
                "arn": f"arn:aws:ec2:{REGIONS[0]}:{acct['id']}:instance/{iid}",
                "spike_at": iso(long_stamps[-1]),
                "spike_value": 95.0,
                "datapoints": [[iso(ts), v] for ts, v in points],
            }
            break
        return {
            "namespace": "AWS/EC2",
            "metric_name": "CPUUtilization",
            "dimension": "InstanceId",
            "unit": "Percent",
            "period_seconds": 300,
            "start": iso(stamps[0]),
            "end": iso(stamps[-1]),
            "series": series,
            "anomaly": anomaly,
        }

    # -- billing ----------------------------------------------------------------------------------

    def seed_billing(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        # A stream of its own, so the billing data does not change with --scale.
        rng = random.Random(f"billing:{self.args.seed}")
        days = self.args.days
        start = self.today - timedelta(days=days)
        dates = [start + timedelta(days=k) for k in range(days)]
        ids = [a["id"] for a in self.accounts]
        jitter = {(acct, svc): rng.uniform(0.9, 1.1) for acct in ids for svc in SERVICES}

        # cost[date][account][service] = unblended USD, rounded to 4 decimals
        cost: dict[date, dict[str, dict[str, float]]] = {}
        for d in dates:
            age_months = (self.today - d).days / 30.0
            growth = (1 + MONTHLY_GROWTH) ** (-age_months)
            cost[d] = {}
            for idx, acct in enumerate(ids):
                cost[d][acct] = {}
                for svc in SERVICES:
                    base = SERVICE_BASE[svc][min(idx, 1)] * jitter[(acct, svc)]
                    wk = d.weekday()
                    season = WEEKEND_FACTOR[svc][wk - 5] if wk >= 5 else 1.0
                    noise = 1 + max(-0.08, min(0.08, rng.gauss(0, 0.03)))
                    cost[d][acct][svc] = round(base * season * growth * noise, 4)

        def amortized(svc: str, v: float) -> float:
            return round(v * AMORTIZED_RATIO[svc], 4)

        # One spike: a service's total on one recent day becomes ANOMALY_FACTOR x its expected value,
        # the extra spend landing in the member account.
        offset = rng.randint(min(2, days), min(9, days))
        spike_day = self.today - timedelta(days=offset)
        spike_svc = rng.choice(SERVICES)
        spike_acct = ids[-1]
        expected = round(sum(cost[spike_day][a][spike_svc] for a in ids), 4)
        expected_amortized = round(sum(amortized(spike_svc, cost[spike_day][a][spike_svc]) for a in ids), 4)
        cost[spike_day][spike_acct][spike_svc] = round(
            cost[spike_day][spike_acct][spike_svc] + expected * (ANOMALY_FACTOR - 1), 4
        )
        actual = round(sum(cost[spike_day][a][spike_svc] for a in ids), 4)

        def pair(u: float, a: float) -> dict[str, float]:
            return {"UnblendedCost": round(u, 4), "AmortizedCost": round(a, 4)}

        month_start = self.today.replace(day=1)
        daily = []
        by_service_results = []
        by_account_results = []
        for d in dates:
            svc_tot = {
                svc: pair(sum(cost[d][a][svc] for a in ids), sum(amortized(svc, cost[d][a][svc]) for a in ids))
                for svc in SERVICES
            }
            acct_tot = {
                a: pair(sum(cost[d][a][s] for s in SERVICES), sum(amortized(s, cost[d][a][s]) for s in SERVICES))
                for a in ids
            }
            total = pair(sum(v["UnblendedCost"] for v in svc_tot.values()),
                         sum(v["AmortizedCost"] for v in svc_tot.values()))
            estimated = d >= month_start
            daily.append({"date": d.isoformat(), "estimated": estimated, "total": total,
                          "by_service": svc_tot, "by_account": acct_tot})
            period = {"Start": d.isoformat(), "End": (d + timedelta(days=1)).isoformat()}
            by_service_results.append(ce_day(period, svc_tot, estimated))
            by_account_results.append(ce_day(period, acct_tot, estimated))

        names = {a["id"]: a["name"] for a in self.accounts}
        queue = [
            {
                "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"}],
                "ResultsByTime": by_service_results,
                "DimensionValueAttributes": [],
            },
            {
                "GroupDefinitions": [{"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}],
                "ResultsByTime": by_account_results,
                "DimensionValueAttributes": [
                    {"Value": a, "Attributes": {"description": names[a]}} for a in ids
                ],
            },
        ]
        status = self.moto.api("static/ce/cost-and-usage-results",
                               {"account_id": MANAGEMENT_ACCOUNT, "results": queue})
        if status != 201:
            raise SystemExit(f"seed: queueing Cost Explorer results returned HTTP {status}")

        monthly: dict[str, dict[str, Any]] = {}
        for entry in daily:
            m = monthly.setdefault(entry["date"][:7], {"month": entry["date"][:7], "days": 0,
                                                       "total": pair(0, 0), "by_service": {}})
            m["days"] += 1
            for metric in METRICS:
                m["total"][metric] = round(m["total"][metric] + entry["total"][metric], 4)
            for svc, v in entry["by_service"].items():
                acc = m["by_service"].setdefault(svc, pair(0, 0))
                for metric in METRICS:
                    acc[metric] = round(acc[metric] + v[metric], 4)
        for key, m in monthly.items():
            y, mo = map(int, key.split("-"))
            m["complete"] = m["days"] == calendar.monthrange(y, mo)[1]

        billing = {
            "currency": "USD",
            "granularity": "DAILY",
            "metrics": METRICS,
            "services": SERVICES,
            "start": start.isoformat(),
            "end": self.today.isoformat(),
            "days": days,
            "ce_queue": {
                "endpoint": "/moto-api/static/ce/cost-and-usage-results",
                "account": MANAGEMENT_ACCOUNT,
                "order": ["SERVICE", "LINKED_ACCOUNT"],
            },
            "anomaly": {
                "service": spike_svc,
                "account": spike_acct,
                "date": spike_day.isoformat(),
                "metric": "UnblendedCost",
                "factor": ANOMALY_FACTOR,
                "expected": expected,
                "actual": actual,
                "expected_amortized": expected_amortized,
                "actual_amortized": round(sum(amortized(spike_svc, cost[spike_day][a][spike_svc]) for a in ids), 4),
            },
            "monthly": list(monthly.values()),
            "daily": daily,
        }
        return billing, self.budgets(daily)

    def budgets(self, daily: list[dict[str, Any]]) -> list[dict[str, Any]]:
        month_start = self.today.replace(day=1)
        month = month_start.strftime("%Y-%m")
        values = {date.fromisoformat(e["date"]): e["total"]["UnblendedCost"] for e in daily}
        mtd = round(sum(v for d, v in values.items() if d >= month_start), 4)
        last7 = [values[d] for d in sorted(values)[-7:]]
        avg7 = round(sum(last7) / len(last7), 4) if last7 else 0.0
        days_in_month = calendar.monthrange(self.today.year, self.today.month)[1]
        remaining = days_in_month - self.today.day + 1
        forecast = round(mtd + avg7 * remaining, 4)
        # The daemon's forecast is weekly-seasonal on medians (a spike in the last week does not lift it, the
        # average does): the amounts keep their margin against both methods.
        robust = round(mtd + sum(self.weekday_median(values, self.today + timedelta(days=k))
                                 for k in range(remaining)), 4)
        common = {
            "month": month,
            "time_unit": "MONTHLY",
            "metric": "UnblendedCost",
            "scope": "all accounts, all services",
            "month_to_date": mtd,
            "avg_last_7_days": avg7,
            "remaining_days": remaining,
            "forecast": forecast,
            "forecast_method": "month_to_date + avg_last_7_days * remaining_days (today included)",
            "forecast_weekday_median": robust,
        }
        tight = float(math.floor(min(forecast, robust) * 0.85))
        roomy = float(math.ceil(max(forecast, robust) * 1.3))
        return [
            {"name": "demo-monthly-tight", "amount": tight, **common, "forecast_exceeds": forecast > tight,
             "actual_exceeds": mtd > tight},
            {"name": "demo-monthly-roomy", "amount": roomy, **common, "forecast_exceeds": forecast > roomy,
             "actual_exceeds": mtd > roomy},
        ]

    def weekday_median(self, values: dict[date, float], day: date) -> float:
        """Median of the four values of `day`'s weekday before today (fewer when the history is shorter)."""
        same = [values[d] for d in (self.today - timedelta(days=7 * w - (day - self.today).days % 7)
                                    for w in range(1, 5)) if d in values and d < self.today]
        if not same:
            return 0.0
        same.sort()
        mid = len(same) // 2
        return same[mid] if len(same) % 2 else (same[mid - 1] + same[mid]) / 2

    # -- expected findings ------------------------------------------------------------------------

    def expected_findings(self, resources: list[dict[str, Any]], billing: dict[str, Any],
                          budgets: list[dict[str, Any]]) -> dict[str, Any]:
        """What the test-bed rule set must find, computed from what was planted and collected here."""
        findings: list[dict[str, str]] = []

        def finding(kind: str, rule: str, subject: str) -> None:
            findings.append({"kind": kind, "rule": rule, "subject": subject})

        # Tagging: one rule over every type; required team/env/owner, team and env from lists, owner by pattern.
        allowed = {"team": TEAMS, "env": ENVS}
        compliance: dict[tuple[str, str], dict[str, Any]] = {}
        for r in resources:
            tags = r["tags"]
            if EXEMPT_TAG in tags:
                continue
            row = compliance.setdefault((r["account"], r["resource_type"]), {
                "account": r["account"], "resource_type": r["resource_type"], "in_scope": 0, "compliant": 0})
            row["in_scope"] += 1
            missing = [k for k in SCHEME_KEYS if k not in tags]
            invalid = [k for k, vs in allowed.items() if k in tags and tags[k] not in vs]
            if "owner" in tags and not re.fullmatch(OWNER_PATTERN, tags["owner"]):
                invalid.append("owner")
            if missing or invalid:
                finding("tagging", TAG_RULE, r["arn"])
            else:
                row["compliant"] += 1
        for row in compliance.values():
            row["ratio"] = row["compliant"] / row["in_scope"]

        # Cleanup, every rule at min_days 0: protected resources are never candidates.
        candidates = {rule: 0 for rule in ["untagged", "unattached_volume", "stopped_instance", "unassociated_eip",
                                           "orphan_snapshot", "log_group_without_retention"]}
        for r in resources:
            if PROTECT_TAG in r["tags"]:
                continue
            t = r["resource_type"]
            hits = {
                "untagged": r["untagged"],
                "unattached_volume": t == "ec2:volume" and not r["attached"],
                "stopped_instance": t == "ec2:instance" and r["state"] == "stopped",
                "unassociated_eip": t == "ec2:elastic-ip" and not r["associated"],
                "orphan_snapshot": t == "ec2:snapshot" and bool(r["source_volume_deleted"]),
                "log_group_without_retention": t == "logs:log-group" and r["retention_days"] is None,
            }
            for rule, hit in hits.items():
                if hit:
                    candidates[rule] += 1
                    finding("cleanup", rule, r["arn"])

        # Budgets: the daemon reads Cost Explorer's amortized cost by service; actual thresholds exactly in
        # decimals, the forecast's side of 100 % checked with a margin against a weekday-median forecast.
        month_start = self.today.replace(day=1)
        amortized = {date.fromisoformat(e["date"]): sum((Decimal(f"{v['AmortizedCost']:.4f}")
                                                         for v in e["by_service"].values()), Decimal(0))
                     for e in billing["daily"]}
        mtd = sum((v for d, v in amortized.items() if d >= month_start), Decimal(0))
        remaining = budgets[0]["remaining_days"]
        floats = {d: float(v) for d, v in amortized.items()}
        robust = float(mtd) + sum(self.weekday_median(floats, self.today + timedelta(days=k)) for k in range(remaining))
        expected_budgets = []
        for b in budgets:
            amount = Decimal(f"{b['amount']:.0f}")
            crossed = [p for p in BUDGET_ACTUAL_PERCENT if mtd * 100 >= p * amount]
            ratio = robust / float(amount)
            if b["forecast_exceeds"] != (ratio > 1) or abs(ratio - 1) < 0.05:
                raise SystemExit(f"seed: budget {b['name']}: amortized forecast ratio {ratio:.3f} is too close "
                                 f"to 1 or disagrees with forecast_exceeds={b['forecast_exceeds']}")
            for p in crossed:
                finding("budget", b["name"], f"{b['name']}/actual/{p}")
            if b["forecast_exceeds"]:
                for p in BUDGET_FORECAST_PERCENT:
                    finding("budget", b["name"], f"{b['name']}/forecast/{p}")
            expected_budgets.append({
                "name": b["name"],
                "amount": str(amount),
                "month_to_date_amortized": str(mtd),
                "used_ratio": float(mtd / amount),
                "actual_percent_crossed": crossed,
                "forecast_exceeds": b["forecast_exceeds"],
            })

        # Cost anomaly: series by service (Cost Explorer has no account per service), the injected spike.
        a = billing["anomaly"]
        anomaly = {"series_kind": "service", "key": a["service"], "date": a["date"]}
        finding("cost_anomaly", "cost_anomaly", f"service:{a['service']}@{a['date']}")

        findings.sort(key=lambda f: (f["kind"], f["rule"], f["subject"]))
        return {
            "rules": {
                "files": ["examples/rules/testbed/*.toml", "the budgets file of --budget-rules"],
                "tag_rule": TAG_RULE,
                "exempt_tag": EXEMPT_TAG,
                "protect_tag": PROTECT_TAG,
                "budget_actual_percent": BUDGET_ACTUAL_PERCENT,
                "budget_forecast_percent": BUDGET_FORECAST_PERCENT,
            },
            "findings": findings,
            "tag_compliance": sorted(compliance.values(), key=lambda r: (r["account"], r["resource_type"])),
            "cleanup_candidates": candidates,
            "budgets": expected_budgets,
            "cost_anomaly": anomaly,
        }

    # -- truth ------------------------------------------------------------------------------------

    def collect(self) -> list[dict[str, Any]]:
        """Build the resource list from what moto now reports, checked against the plan."""
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str, str]] = set()

        def add(account: str, region: str, rtype: str, rid: str, arn: str, tags: dict[str, str], **fields: Any):
            key = (account, region, rid)
            if key not in self.planned:
                raise SystemExit(f"seed: moto reports {rtype} {rid} in {account}/{region} that was not created here")
            seen.add(key)
            tags = user_tags(tags)
            case = classify(tags)
            if case != self.planned[key]:
                raise SystemExit(f"seed: {rtype} {rid} has tag case {case}, planned {self.planned[key]}: {tags}")
            row = {
                "arn": arn,
                "id": rid,
                "account": account,
                "region": region,
                "resource_type": rtype,
                "tags": dict(sorted(tags.items())),
                "untagged": not tags,
                "tag_case": case,
                "state": None,
                "created_at": None,
                "attached": None,
                "associated": None,
                "retention_days": None,
                "source_volume_deleted": None,
            }
            row.update(fields)
            row["details"] = self.details.get(key, {})
            out.append(row)

        for acct in self.accounts:
            a = acct["id"]
            for region in REGIONS:
                ec2 = self.c("ec2", a, region)
                for page in ec2.get_paginator("describe_instances").paginate():
                    for res in page["Reservations"]:
                        if res["OwnerId"] != a:
                            raise SystemExit(f"seed: reservation owner {res['OwnerId']} != {a}")
                        for inst in res["Instances"]:
                            iid = inst["InstanceId"]
                            if (a, region, iid) in self.details:
                                reason = inst.get("StateTransitionReason") or None
                                self.details[(a, region, iid)]["state_transition_reason"] = reason
                            add(a, region, "ec2:instance", iid, f"arn:aws:ec2:{region}:{a}:instance/{iid}",
                                tag_dict(inst.get("Tags")), state=inst["State"]["Name"],
                                created_at=iso(inst.get("LaunchTime")))
                volume_ids = set()
                volumes = [v for p in ec2.get_paginator("describe_volumes").paginate() for v in p["Volumes"]]
                for vol in volumes:
                    vid = vol["VolumeId"]
                    volume_ids.add(vid)
                    add(a, region, "ec2:volume", vid, f"arn:aws:ec2:{region}:{a}:volume/{vid}",
                        tag_dict(vol.get("Tags")), state=vol["State"], created_at=iso(vol.get("CreateTime")),
                        attached=bool(vol.get("Attachments")))
                pages = ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"])
                for snap in [s for p in pages for s in p["Snapshots"]]:
                    sid = snap["SnapshotId"]
                    add(a, region, "ec2:snapshot", sid, f"arn:aws:ec2:{region}::snapshot/{sid}",
                        tag_dict(snap.get("Tags")), state=snap.get("State"), created_at=iso(snap.get("StartTime")),
                        source_volume_deleted=snap.get("VolumeId") not in volume_ids)
                for addr in ec2.describe_addresses()["Addresses"]:
                    aid = addr["AllocationId"]
                    add(a, region, "ec2:elastic-ip", aid, f"arn:aws:ec2:{region}:{a}:elastic-ip/{aid}",
                        tag_dict(addr.get("Tags")), associated=bool(addr.get("AssociationId") or addr.get("InstanceId")))
                rds = self.c("rds", a, region)
                for page in rds.get_paginator("describe_db_instances").paginate():
                    for db in page["DBInstances"]:
                        ident = db["DBInstanceIdentifier"]
                        add(a, region, "rds:db", ident, f"arn:aws:rds:{region}:{a}:db:{ident}",
                            tag_dict(db.get("TagList")), state=db.get("DBInstanceStatus"),
                            created_at=iso(db.get("InstanceCreateTime")))
                logs = self.c("logs", a, region)
                for page in logs.get_paginator("describe_log_groups").paginate():
                    for group in page["logGroups"]:
                        name = group["logGroupName"]
                        arn = f"arn:aws:logs:{region}:{a}:log-group:{name}"
                        tags = logs.list_tags_for_resource(resourceArn=arn).get("tags", {})
                        created = datetime.fromtimestamp(group["creationTime"] / 1000, tz=timezone.utc)
                        add(a, region, "logs:log-group", name, arn, tags, created_at=iso(created),
                            retention_days=group.get("retentionInDays"))
            s3 = self.c("s3", a, REGIONS[0])
            for bucket in s3.list_buckets()["Buckets"]:
                name = bucket["Name"]
                region = s3.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
                try:
                    tags = tag_dict(s3.get_bucket_tagging(Bucket=name)["TagSet"])
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "NoSuchTagSet":
                        raise
                    tags = {}
                add(a, region, "s3:bucket", name, f"arn:aws:s3:::{name}", tags,
                    created_at=iso(bucket.get("CreationDate")))

        missing = set(self.planned) - seen
        if missing:
            raise SystemExit(f"seed: created but not reported by moto: {sorted(missing)[:5]}")
        order = {t: i for i, t in enumerate(
            ["ec2:instance", "ec2:volume", "ec2:snapshot", "ec2:elastic-ip", "rds:db", "logs:log-group", "s3:bucket"])}
        ids = [acct["id"] for acct in self.accounts]
        out.sort(key=lambda r: (ids.index(r["account"]), REGIONS.index(r["region"]), order[r["resource_type"]], r["id"]))
        return out

    def verify_isolation(self) -> None:
        """Member resources must be invisible to the management account and vice versa."""
        member = self.accounts[1]["id"]
        for region in REGIONS:
            seen = {
                a["id"]: {
                    i["InstanceId"]
                    for p in self.c("ec2", a["id"], region).get_paginator("describe_instances").paginate()
                    for r in p["Reservations"]
                    for i in r["Instances"]
                }
                for a in self.accounts
            }
            if seen[MANAGEMENT_ACCOUNT] & seen[member]:
                raise SystemExit(f"seed: accounts share instances in {region}; multi-account isolation is broken")
        self.checks["member_isolated"] = True

    def run(self) -> dict[str, Any]:
        if not self.args.no_reset:
            self.moto.api("reset")
        self.moto.api("seed", query={"a": self.args.seed})
        self.setup_organisation()
        for acct in self.accounts:
            for region in REGIONS:
                self.seed_region(acct["id"], region)
        cloudwatch = self.seed_metrics()
        planted = self.plant()
        billing, budgets = self.seed_billing()
        self.verify_isolation()
        resources = self.collect()
        expected = self.expected_findings(resources, billing, budgets)
        by_arn = {r["arn"]: r for r in resources}
        for p in planted:
            if p["arn"] not in by_arn:
                raise SystemExit(f"seed: planted {p['arn']} is not among the collected resources")

        counts: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in resources:
            row = counts.setdefault((r["account"], r["region"], r["resource_type"]), {
                "account": r["account"], "region": r["region"], "resource_type": r["resource_type"],
                "total": 0, "untagged": 0,
            })
            row["total"] += 1
            row["untagged"] += int(r["untagged"])

        return {
            "seed": self.args.seed,
            "scale": self.args.scale,
            "days": self.args.days,
            "generated_at": iso(self.now),
            "endpoint": self.moto.endpoint,
            "image_id": IMAGE_ID,
            "management_account": MANAGEMENT_ACCOUNT,
            "accounts": self.accounts,
            "regions": REGIONS,
            "tag_scheme": {
                "keys": SCHEME_KEYS,
                "team": TEAMS,
                "env": ENVS,
                "owner": f"<name>@{EMAIL_DOMAIN}",
                "case_precedence": ["untagged", "wrong_case", "missing_key", "invalid_value", "valid"],
            },
            "checks": self.checks,
            "resources": resources,
            "counts": list(counts.values()),
            "billing": billing,
            "cloudwatch": cloudwatch,
            "budgets": budgets,
            "planted": planted,
            "expected_findings": expected,
        }


def put_cpu(cw: Any, instance_id: str, points: list[tuple[datetime, float]]) -> None:
    """Puts an instance's CPUUtilization points (timestamp, percent), at most 500 per call."""
    for i in range(0, len(points), 500):
        cw.put_metric_data(
            Namespace="AWS/EC2",
            MetricData=[
                {
                    "MetricName": "CPUUtilization",
                    "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
                    "Timestamp": ts,
                    "Value": v,
                    "Unit": "Percent",
                }
                for ts, v in points[i:i + 500]
            ],
        )


def ce_day(period: dict[str, str], groups: dict[str, dict[str, float]], estimated: bool) -> dict[str, Any]:
    return {
        "TimePeriod": period,
        "Total": {},
        "Groups": [
            {
                "Keys": [key],
                "Metrics": {m: {"Amount": f"{v[m]:.4f}", "Unit": "USD"} for m in METRICS},
            }
            for key, v in groups.items()
        ],
        "Estimated": estimated,
    }


def write_atomic(path: str, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def write_text_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".seed-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def budget_rules(budgets: list[dict[str, Any]]) -> str:
    """The test-bed's budgets as a rule file: amounts follow the seeded billing data, so they are written here."""
    out = ["# Written by scripts/seed.py: the test-bed budgets of " + budgets[0]["month"]
           + " (amounts from the seeded billing data).", ""]
    for b in budgets:
        out += [
            "[[budgets]]",
            f'name = "{b["name"]}"',
            'scope = { type = "total" }',
            'period = "month"',
            f'amount_usd = "{b["amount"]:.0f}"',
            "",
            "[budgets.thresholds]",
            f"actual_percent = {BUDGET_ACTUAL_PERCENT}",
            f"forecast_percent = {BUDGET_FORECAST_PERCENT}",
            "",
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="moto server URL, e.g. http://127.0.0.1:5055")
    parser.add_argument("--truth", required=True, help="where to write the truth JSON")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies per-region resource counts")
    parser.add_argument("--days", type=int, default=90, help="days of billing history (default 90)")
    parser.add_argument("--budget-rules", metavar="PATH",
                        help="also write the test-bed budgets as a rule file there")
    parser.add_argument("--no-reset", action="store_true",
                        help="do not reset the server first (it must then be empty)")
    args = parser.parse_args(argv)
    if args.scale < 0:
        parser.error("--scale must be >= 0")
    if args.days < 1:
        parser.error("--days must be >= 1")

    started = time.monotonic()
    truth = Seeder(args).run()
    write_atomic(args.truth, truth)
    if args.budget_rules:
        write_text_atomic(args.budget_rules, budget_rules(truth["budgets"]))
    print(
        f"seeded {len(truth['resources'])} resources in {len(truth['accounts'])} accounts x "
        f"{len(truth['regions'])} regions, {args.days} billing days, "
        f"{len(truth['cloudwatch']['series'])} CPU series in {time.monotonic() - started:.1f}s -> {args.truth}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
