#!/usr/bin/env python3
"""The IAM policies of infra/s3 against a moto server of their own with authorization enforced:
the worker identity reads and writes the registry (and nothing outside its prefix); the functions identity may
read the registry and write job requests and pending uploads, and nothing else."""
import json, os, socket, subprocess, sys, time
import boto3
from botocore.exceptions import ClientError

root = sys.argv[1]
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
# The first 7 actions (the bucket, then a user, its policy and its key for each role) run as
# admin; every later one is authorized against the policies.
env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="7")
proc = subprocess.Popen([f"{root}/.venv/bin/moto_server", "-H", "127.0.0.1", "-p", str(port)],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); break
        except OSError:
            time.sleep(0.1)
    admin = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="admin", aws_secret_access_key="admin")
    bucket, prefix = "iam-check", "prod/"
    boto3.client("s3", **admin).create_bucket(Bucket=bucket)
    iam = boto3.client("iam", **admin)
    def identity(role):
        iam.create_user(UserName=role)
        doc = open(f"{root}/infra/s3/policy-{role}.json").read()
        doc = doc.replace("@BUCKET@", bucket).replace("@PREFIX@", prefix)
        iam.put_user_policy(UserName=role, PolicyName=role, PolicyDocument=doc)
        key = iam.create_access_key(UserName=role)["AccessKey"]
        return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                            aws_access_key_id=key["AccessKeyId"],
                            aws_secret_access_key=key["SecretAccessKey"])
    functions, worker = identity("functions"), identity("worker")
    def allowed(call):
        try:
            call(); return True
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDenied", e
            return False
    def put(client, k):
        return allowed(lambda: client.put_object(Bucket=bucket, Key=prefix + k, Body=b"x"))
    checks = [
        # (who, what, expected)
        ("worker", "put models/iris/index.json", lambda: put(worker, "models/iris/index.json"), True),
        ("worker", "put blobs/sha256/ab", lambda: put(worker, "blobs/sha256/ab"), True),
        ("worker", "delete blobs/sha256/ab", lambda: allowed(lambda: worker.delete_object(Bucket=bucket, Key=prefix + "blobs/sha256/ab")), True),
        ("worker", "put outside the prefix", lambda: allowed(lambda: worker.put_object(Bucket=bucket, Key="other/x", Body=b"x")), False),
        ("functions", "put jobs/0000.json", lambda: put(functions, "jobs/0000.json"), True),
        ("functions", "put jobs/pending/0000", lambda: put(functions, "jobs/pending/0000"), True),
        ("functions", "put datasets/photos/pending/1.bin", lambda: put(functions, "datasets/photos/pending/1.bin"), True),
        ("functions", "get models/iris/index.json", lambda: allowed(lambda: functions.get_object(Bucket=bucket, Key=prefix + "models/iris/index.json")), True),
        ("functions", "list the registry", lambda: allowed(lambda: functions.list_objects_v2(Bucket=bucket, Prefix=prefix)), True),
        ("functions", "put models/iris/index.json", lambda: put(functions, "models/iris/index.json"), False),
        ("functions", "put blobs/sha256/cd", lambda: put(functions, "blobs/sha256/cd"), False),
        ("functions", "put datasets/photos/index.json", lambda: put(functions, "datasets/photos/index.json"), False),
        ("functions", "put catalog/x", lambda: put(functions, "catalog/x"), False),
        ("functions", "delete jobs/0000.json", lambda: allowed(lambda: functions.delete_object(Bucket=bucket, Key=prefix + "jobs/0000.json")), False),
    ]
    wrong = [(who, what) for who, what, call, want in checks if call() != want]
    assert not wrong, f"the IAM policies in infra/s3 give the wrong outcome for {wrong}"
    print(f"infra: the worker and functions IAM policies, enforced by moto, give the expected outcome in {len(checks)} checks")
finally:
    proc.terminate(); proc.wait()
